"""Extraction throughput and peak memory of ``dalr_hf.features.extract_features``.

Generates N photo-sized images (smooth random colour fields, 320x240 JPEG) with five captions each in the Flickr30k
token format, then extracts image and caption features with a randomly initialised open_clip model (ViT-B-32 by
default; random weights cost exactly what trained ones do, and nothing is downloaded). Each dataset size runs in
its own subprocess so that peak RSS values are comparable; extraction streams shards to disk, so the peak should
not grow with the number of images.

    python benchmarks/extract_features.py                      # 64 and 256 images, ViT-B-32, CPU
    python benchmarks/extract_features.py --sizes 64 256 1024 --device cuda --precision bf16 --batch-size 256

Columns: images/s counts end-to-end extraction (decode, image forward, 5 caption forwards per image unless
``--no-caption-features``, Arrow writes, final assembly), excluding model creation; "RSS after model" is measured
once the model is loaded; "peak RSS" is the process's maximum resident set (``ru_maxrss``) over the whole run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def make_dataset(folder: Path, num_images: int, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(num_images):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((320, 240), Image.Resampling.BICUBIC)
        name = f"{100000 + i}.jpg"
        image.save(images / name, quality=90)
        lines += [f"{name}#{k}\ta generated photo number {i} seen from angle {k} with some objects" for k in range(5)]
    (folder / "results_20130124.token").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def worker(args: argparse.Namespace) -> None:
    import torch

    from dalr_hf.features import ClipEncoder, extract_features

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = Path(args.data)
    start = time.perf_counter()
    encoder = ClipEncoder(args.model, pretrained=None, device=args.device, precision=args.precision)
    load_s = time.perf_counter() - start
    rss_model = _rss_mb()
    start = time.perf_counter()
    _, metadata = extract_features(
        folder / "images",
        folder / "results_20130124.token",
        folder / "store",
        encoder=encoder,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        num_workers=args.num_workers,
        caption_features=not args.no_caption_features,
        progress=False,
    )
    if args.device and args.device.startswith("cuda"):
        torch.cuda.synchronize()
    extract_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "images": metadata["num_images"],
                "rows": metadata["num_rows"],
                "load_s": load_s,
                "extract_s": extract_s,
                "images_per_s": metadata["num_images"] / extract_s,
                "rss_after_model_mb": rss_model,
                "peak_rss_mb": _peak_rss_mb(),
                "threads": torch.get_num_threads(),
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="Numbers of images.")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model (randomly initialised).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-size", type=int, default=32, help="Images per shard (bounds memory).")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    parser.add_argument(
        "--no-caption-features",
        action="store_true",
        help="Image features only (DALR's loss does not use CLIP caption features).",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            data = make_dataset(Path(tmp) / f"n{size}", size)
            command = [
                sys.executable,
                __file__,
                "--worker",
                "--data",
                str(data),
                "--model",
                args.model,
                "--device",
                args.device,
                "--precision",
                args.precision,
                "--batch-size",
                str(args.batch_size),
                "--shard-size",
                str(args.shard_size),
                "--num-workers",
                str(args.num_workers),
                "--threads",
                str(args.threads),
            ] + (["--no-caption-features"] if args.no_caption_features else [])
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                sys.exit(f"worker for {size} images failed:\n{result.stderr[-4000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    captions = "image features only" if args.no_caption_features else "image + caption features (5 captions/image)"
    print(
        f"\nExtraction with a randomly initialised {args.model} on {args.device} ({args.precision}), {captions}, "
        f"batch {args.batch_size}, shard {args.shard_size} images, {rows[0]['threads']} threads\n"
    )
    print("| images | rows | model load s | extraction s | images/s | RSS after model MB | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['images']} | {r['rows']} | {r['load_s']:.1f} | {r['extract_s']:.1f} | {r['images_per_s']:.1f} "
            f"| {r['rss_after_model_mb']:.0f} | {r['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
