"""Time ``plsc data extract`` with and without ``--reencode``.

Writes a RecordIO file of synthetic 112x112 JPEG records (InsightFace layout,
written by ``plsc data pack``'s writer) into a temporary folder, extracts it
``--runs`` times per mode into fresh folders, and prints one JSON object with
the median records/s per mode. ``--markdown`` prints the table for
docs/benchmarks.md as well.

    python benchmarks/extract.py --records 20000 --runs 3 --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from plsc_cli.data.extract import extract_recordio
from plsc_cli.data.pack import PackInput, write_insightface_recordio


def synthetic_jpegs(count: int, seed: int) -> list[bytes]:
    """Encode ``count`` distinct smooth 112x112 images as JPEG quality 95."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(14, 14, 3), dtype=np.uint8)
        image = cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(-8, 9, size=image.shape)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        images.append(data.tobytes())
    return images


def write_dataset(folder: Path, records: int, classes: int, distinct: int) -> int:
    """Write ``records`` images in ``classes`` classes; return the .rec size."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True)
    paths = []
    for i, data in enumerate(synthetic_jpegs(distinct, seed=0)):
        path = image_dir / f"{i}.jpg"
        path.write_bytes(data)
        paths.append(path)
    # Records reuse the distinct files, so generation stays fast.
    images = PackInput(
        paths=[paths[i % distinct] for i in range(records)],
        labels=np.arange(records, dtype=np.int64) % classes,
        num_classes=classes,
        class_names=None,
    )
    rec_dir = folder / "rec"
    rec_dir.mkdir()
    write_insightface_recordio(rec_dir, images)
    return (rec_dir / "train.rec").stat().st_size


def time_extract(rec_dir: Path, work: Path, reencode: bool, workers: int) -> float:
    out = work / f"out-{reencode}-{workers}-{time.monotonic_ns()}"
    start = time.perf_counter()
    summary = extract_recordio(rec_dir, out, reencode=reencode, workers=workers)
    seconds = time.perf_counter() - start
    assert summary["written"] == summary["images"]
    shutil.rmtree(out)
    return seconds


def markdown_table(result: dict) -> str:
    lines = [
        "| Mode | Workers | Records | Median s | Median records/s | Runs (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["results"]:
        runs = ", ".join(f"{s:.2f}" for s in row["seconds"])
        lines.append(
            f"| {row['mode']} | {row['workers']} | {result['records']:,} | "
            f"{row['median_seconds']:.2f} | {row['median_records_per_second']:,.0f} "
            f"| {runs} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=500, help="distinct images")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="plsc-bench-extract-") as temp:
        work = Path(temp)
        rec_size = write_dataset(work, args.records, args.classes, args.distinct)
        results = []
        for reencode in (False, True):
            for workers in args.workers:
                seconds = [
                    time_extract(work / "rec", work, reencode, workers)
                    for _ in range(args.runs)
                ]
                median = statistics.median(seconds)
                results.append(
                    {
                        "mode": "--reencode" if reencode else "default",
                        "workers": workers,
                        "seconds": [round(s, 3) for s in seconds],
                        "median_seconds": round(median, 3),
                        "median_records_per_second": round(args.records / median, 1),
                    }
                )
    result = {
        "benchmark": "extract",
        "records": args.records,
        "classes": args.classes,
        "rec_bytes": rec_size,
        "runs": args.runs,
        "results": results,
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "cpu_count": os.cpu_count(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    if args.markdown:
        print(markdown_table(result))


if __name__ == "__main__":
    main()
