#!/usr/bin/env bash
# One prepared GPU check, at most 8 minutes on one GPU:
#   1. benchmarks/step_time.py's rows (sentence-transformers SimCSE, our SimCSE, DALR reference online, DALR from
#      cached embeddings, DALR reference from cached token states) in fp32 and in bf16 on CUDA;
#   2. every DALR loss term finite in bf16 and within tolerance of fp32, and the cached path equal to the online
#      path in fp32 on the GPU;
#   3. the offline demo recipe (examples/configs/demo_offline.yaml) trained on CUDA.
# It prints one summary table and exits non-zero when a check fails.
#
#   bash benchmarks/gpu_check.sh                 # on a CUDA machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu           # the same script on the CPU, tiny sizes: checks the script itself
#
# Environment: PYTHON (default python), GPU_CHECK_OUT (folder for logs and JSON, default a new temporary folder).
set -uo pipefail

MODE=cuda
if [ "${1:-}" = "--cpu" ]; then MODE=cpu; fi
PY=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t dalr-gpu-check-XXXXXX)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$MODE" = cuda ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to $PY (use --cpu to check the script on the CPU)" >&2
    exit 2
  fi
  STEP_ARGS=(--device cuda --batch-size 64 --steps 10 --warmup 3)
  STEP_LIMIT=120
  DEMO_ARGS=()
  DEMO_LIMIT=240
else
  STEP_ARGS=(--device cpu --batch-size 8 --steps 2 --warmup 1 --no-memory)
  STEP_LIMIT=600
  DEMO_ARGS=(--use_cpu true --max_steps 2 --eval_strategy no --save_strategy no --load_best_model_at_end false)
  DEMO_LIMIT=900
fi

started=$(date +%s)
status=()
for precision in fp32 bf16; do
  echo "[gpu_check] step-time rows, $precision ($MODE) ..."
  timeout "$STEP_LIMIT" "$PY" benchmarks/step_time.py "${STEP_ARGS[@]}" --precision "$precision" \
    --json "$OUT/step_$precision.json" --terms-json "$OUT/terms_$precision.json" >"$OUT/step_$precision.log" 2>&1
  status+=("step_$precision=$?")
done

echo "[gpu_check] demo recipe ($MODE) ..."
timeout "$DEMO_LIMIT" "$PY" examples/train_dalr.py --config examples/configs/demo_offline.yaml \
  --output_dir "$OUT/demo" "${DEMO_ARGS[@]}" >"$OUT/demo.log" 2>&1
status+=("demo=$?")
elapsed=$(( $(date +%s) - started ))

"$PY" - "$OUT" "$MODE" "$elapsed" "${status[@]}" <<'EOF'
import json, math, os, sys

out, mode, elapsed, *statuses = sys.argv[1:]
rc = dict(s.split("=") for s in statuses)
REL, ABS = 0.05, 0.02  # bf16 against fp32: |bf16 - fp32| <= REL * |fp32| + ABS
failures = []


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.isfile(path) else None


rows = []
steps = {p: load(f"step_{p}.json") for p in ("fp32", "bf16")}
terms = {p: load(f"terms_{p}.json") for p in ("fp32", "bf16")}
for p in ("fp32", "bf16"):
    if rc[f"step_{p}"] != "0" or steps[p] is None or terms[p] is None:
        failures.append(f"step_time.py {p} failed (exit {rc[f'step_{p}']}; see {out}/step_{p}.log)")
if steps["fp32"] and steps["bf16"]:
    for key, row in steps["fp32"]["rows"].items():
        bf = steps["bf16"]["rows"].get(key, {})
        rows.append(("step (s), median", row["name"], f"{row['median_s']:.4f}", f"{bf.get('median_s', float('nan')):.4f}",
                     f"peak {row['peak_bytes'] / 2**20:.0f} / {bf.get('peak_bytes', 0) / 2**20:.0f} MiB"))
    for p in ("fp32", "bf16"):
        for target in steps[p]["targets"]:
            what = "memory" if "memory_ratio" in target else "time"
            value = target.get("memory_ratio", target.get("ratio"))
            rows.append((f"target ({p})", f"{what} {target['row']} / {target['against']}", f"{value:.3f}",
                         f"<= {target['target']}", "met" if target["met"] else "MISSED"))
if terms["fp32"] and terms["bf16"]:
    t32, t16 = terms["fp32"]["terms"], terms["bf16"]["terms"]
    for key in t32:
        for name, a in t32[key].items():
            b = t16.get(key, {}).get(name, float("nan"))
            ok = math.isfinite(a) and math.isfinite(b) and abs(b - a) <= REL * abs(a) + ABS
            if not ok:
                failures.append(f"{key} {name}: fp32 {a:.6g}, bf16 {b:.6g}")
            rows.append(("loss term", f"{key} {name}", f"{a:.6g}", f"{b:.6g}", "ok" if ok else "FAIL"))
    for name, a in t32.get("dalr-online", {}).items():  # the cached path gives the online terms on this device
        b = t32.get("dalr-cached", {}).get(name, float("nan"))
        ok = abs(b - a) <= 1e-4 * max(1.0, abs(a))
        if not ok:
            failures.append(f"cached vs online {name}: {b:.8g} vs {a:.8g}")
        rows.append(("cached = online (fp32)", name, f"{a:.8g}", f"{b:.8g}", "ok" if ok else "FAIL"))
report = None
for candidate in ("dalr_run_report.json",):
    path = os.path.join(out, "demo", candidate)
    if os.path.isfile(path):
        report = json.load(open(path))
if rc["demo"] != "0" or report is None:
    failures.append(f"demo recipe failed (exit {rc['demo']}; see {out}/demo.log)")
else:
    dev = (report.get("comparison") or {}).get("dev") or {}
    before = dev.get("base", report.get("before"))
    after = dev.get("student", report.get("after"))
    ok = before is not None and after is not None and math.isfinite(before) and math.isfinite(after)
    if not ok:
        failures.append("demo recipe: no finite STS-B dev score in its run report")
    rows.append(("demo recipe", "STS-B dev Spearman x100 (before, after)", f"{before}", f"{after}",
                 "ok" if ok else "FAIL"))

widths = [max(len(str(r[i])) for r in rows + [("check", "item", "fp32 / value", "bf16 / limit", "result")])
          for i in range(5)]
line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
print(f"\nDALR GPU check ({mode}), {elapsed} s, logs and JSON in {out}")
print(line(("check", "item", "fp32 / value", "bf16 / limit", "result")))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    print(line(r))
print("\nRESULT:", "PASS" if not failures else "FAIL")
for f in failures:
    print("  -", f)
sys.exit(0 if not failures else 1)
EOF
