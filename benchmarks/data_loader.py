"""Measure the training loader's images/s: RecordIO against a label.txt folder.

Usage::

    python benchmarks/data_loader.py [--num-workers 0 2] [--batch-size 128]

Both datasets hold the same JPEG images: a synthetic RecordIO dataset, and a
label.txt folder extracted from it by this script. The script prints one JSON
object with a result per (kind, num_workers), or with ``--markdown`` the table
of docs/benchmarks.md. Files are freshly written, so both kinds read from the
page cache and the numbers measure decoding and batching, not disk speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ("recordio", "label_file", "synthetic")
DEFAULT_NUM_CLASSES = 100
DEFAULT_IMAGES_PER_CLASS = 40


def write_benchmark_data(
    out_dir: str | os.PathLike[str],
    num_classes: int = DEFAULT_NUM_CLASSES,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
) -> dict[str, Path]:
    """Write a synthetic RecordIO dataset and its label.txt extraction.

    Returns the data path of each kind: ``recordio`` (folder with train.rec)
    and ``label_file`` (folder with label.txt and images/).
    """
    from plsc_cli.data.recordio import RecordIOReader, scan_recordio, unpack_payload
    from plsc_cli.data.synthetic import write_synthetic_recordio

    out = Path(out_dir)
    rec_dir = write_synthetic_recordio(out / "rec", num_classes, images_per_class)
    label_dir = out / "label_file"
    (label_dir / "images").mkdir(parents=True, exist_ok=True)
    index = scan_recordio(rec_dir)
    lines = []
    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        for key, label in zip(index.keys, index.labels, strict=True):
            _, image = unpack_payload(reader.read(int(key)))
            name = f"images/{int(key):08d}.jpg"
            (label_dir / name).write_bytes(image)
            lines.append(f"{name}\t{int(label)}\n")
    (label_dir / "label.txt").write_text("".join(lines))
    return {"recordio": rec_dir, "label_file": label_dir}


def measure_loader(
    kind: str,
    data: str | os.PathLike[str] | None = None,
    num_workers: int = 0,
    batch_size: int = 128,
    num_batches: int = 25,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``TrainLoader`` on one rank and return the median images/s.

    Each of the ``repeats`` runs reads a new epoch and times ``num_batches`` of
    its batches.

    ``kind`` is ``recordio``, ``label_file`` or ``synthetic``. Without ``data``
    the function writes a dataset into a temporary folder first; synthetic data
    needs none. The first batch of each run, which also starts the worker
    processes in the first run, is not timed.
    """
    from plsc_cli.data.pipeline import ShardSampler, TrainLoader, build_train_source

    if kind not in KINDS:
        raise ValueError(f"unknown loader kind {kind!r}; choose one of {KINDS}")
    if kind == "synthetic":
        # Enough samples for the timed batches plus the untimed first one.
        spec: str | os.PathLike[str] = (
            f"synthetic:{DEFAULT_NUM_CLASSES}:{(num_batches + 1) * batch_size}"
        )
    elif data is None:
        with tempfile.TemporaryDirectory(prefix="plsc-loader-") as tmp:
            paths = write_benchmark_data(tmp)
            return measure_loader(
                kind, paths[kind], num_workers, batch_size, num_batches, repeats, seed
            )
    else:
        spec = data
    source = build_train_source(spec)
    sampler = ShardSampler(len(source), rank=0, world_size=1, seed=seed)
    with TrainLoader(source, sampler, batch_size, num_workers, seed=seed) as loader:
        if len(loader) < num_batches + 1:
            raise ValueError(
                f"{kind} data has {len(loader)} batches of {batch_size}; the "
                f"benchmark needs {num_batches + 1}"
            )
        rates = []
        for epoch in range(repeats):
            batches = loader.epoch_batches(epoch)
            next(batches)
            start = time.perf_counter()
            for _ in range(num_batches):
                next(batches)
            rates.append(num_batches * batch_size / (time.perf_counter() - start))
            batches.close()
    return {
        "kind": kind,
        "num_workers": num_workers,
        "batch_size": batch_size,
        "images_per_run": num_batches * batch_size,
        "images_per_s": round(statistics.median(rates), 1),
        "images_per_s_runs": [round(rate, 1) for rate in rates],
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Format results as the Markdown table of docs/benchmarks.md."""
    lines = [
        "| Source | Workers | Batch | Images/s (median) | Runs |",
        "|---|---:|---:|---:|---|",
    ]
    for result in results:
        runs = ", ".join(f"{rate:.0f}" for rate in result["images_per_s_runs"])
        lines.append(
            f"| {result['kind']} | {result['num_workers']} | "
            f"{result['batch_size']} | {result['images_per_s']:.0f} | {runs} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--num-workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-batches", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=DEFAULT_NUM_CLASSES)
    parser.add_argument(
        "--images-per-class", type=int, default=DEFAULT_IMAGES_PER_CLASS
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table, not JSON"
    )
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="plsc-loader-") as tmp:
        paths = write_benchmark_data(tmp, args.num_classes, args.images_per_class)
        for kind in args.kinds:
            for workers in args.num_workers:
                results.append(
                    measure_loader(
                        kind,
                        paths.get(kind),
                        workers,
                        args.batch_size,
                        args.num_batches,
                        args.repeats,
                    )
                )
    report = {
        "benchmark": "data_loader",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "image_size": 112,
        "results": results,
    }
    if args.markdown:
        print(markdown_table(results))
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
