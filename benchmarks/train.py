"""Measure training samples/s on CPU: backbones, static against dynamic mode,
1 against 2 ranks, and the data loader alone.

Usage::

    flock /tmp/plsc-heavy.lock python benchmarks/train.py [--markdown]

Each training case runs ``plsc train`` on in-memory synthetic images (no
decoding) for ``warmup + timed`` steps and reports the median of the timed
steps' global samples/s, read from the run's scalars.csv. One rank runs in the
``plsc`` process with all cores; two ranks run under paddle.distributed.launch
with half the cores each. The data-loader cases time ``TrainLoader`` alone on
RecordIO and on a label.txt folder holding the same JPEG images, with the
function from benchmarks/data_loader.py. Prints one JSON object, or the
Markdown tables of docs/benchmarks.md with ``--markdown``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 1000
# (backbone, images per rank, warm-up steps, timed steps); IResNet-50 takes
# seconds per step on two cores, so its runs are short.
CASES = {
    "mobilefacenet": (16, 2, 5),
    "iresnet50": (8, 2, 3),
}


def measure_training(
    backbone: str,
    mode: str,
    ranks: int,
    batch_size: int,
    warmup: int,
    timed: int,
    work_dir: Path,
) -> dict[str, Any]:
    """Run one ``plsc train`` case; returns its median samples/s and wall time."""
    steps = warmup + timed
    run_dir = work_dir / f"{backbone}-{mode}-{ranks}"
    num_samples = steps * batch_size * ranks
    command = [
        sys.executable, "-m", "plsc_cli", "-q", "train",
        "--data", f"synthetic:{NUM_CLASSES}:{num_samples}",
        "--backbone", backbone, "--mode", mode, "--batch-size", str(batch_size),
        "--max-steps", str(steps), "--epochs", "1", "--workers", "0",
        "--output-dir", str(run_dir), "--save-every", "0", "--keep-last", "1",
        "--device", "cpu",
    ]  # fmt: skip
    if ranks > 1:
        command += ["--nproc", str(ranks)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(run_dir / "scalars.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if int(row["step"]) > warmup]
    rates = [float(row["samples_per_s"]) for row in rows]
    return {
        "backbone": backbone,
        "mode": mode,
        "ranks": ranks,
        "batch_per_rank": batch_size,
        "timed_steps": len(rates),
        "samples_per_s": round(statistics.median(rates), 2),
        "samples_per_s_per_rank": round(statistics.median(rates) / ranks, 2),
        "wall_s": round(wall, 1),
    }


def _data_loader_module() -> Any:
    path = ROOT / "benchmarks" / "data_loader.py"
    spec = importlib.util.spec_from_file_location("data_loader_benchmark", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def measure_data_loader(batch_size: int = 128) -> list[dict[str, Any]]:
    """Images/s of the loader alone: RecordIO against the same label.txt folder."""
    module = _data_loader_module()
    results = []
    with tempfile.TemporaryDirectory(prefix="plsc-train-bench-") as tmp:
        paths = module.write_benchmark_data(tmp, num_classes=50, images_per_class=60)
        for kind in ("recordio", "label_file"):
            results.append(
                module.measure_loader(
                    kind, paths[kind], 0, batch_size, num_batches=15, repeats=3
                )
            )
    return results


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| Backbone | Mode | Ranks | Batch/rank | Samples/s (global) | "
        "Samples/s per rank | Timed steps |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["training"]:
        lines.append(
            f"| {r['backbone']} | {r['mode']} | {r['ranks']} | {r['batch_per_rank']} "
            f"| {r['samples_per_s']:.1f} | {r['samples_per_s_per_rank']:.1f} "
            f"| {r['timed_steps']} |"
        )
    lines += ["", "| Loader source | Workers | Batch | Images/s (median) |"]
    lines += ["|---|---:|---:|---:|"]
    for r in report["data_loader"]:
        lines.append(
            f"| {r['kind']} | {r['num_workers']} | {r['batch_size']} "
            f"| {r['images_per_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbones", nargs="+", choices=list(CASES), default=list(CASES)
    )
    parser.add_argument("--modes", nargs="+", default=["dynamic", "static"])
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--skip-loader", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    training = []
    with tempfile.TemporaryDirectory(prefix="plsc-train-bench-") as tmp:
        for backbone in args.backbones:
            batch_size, warmup, timed = CASES[backbone]
            for mode in args.modes:
                for ranks in args.ranks:
                    training.append(
                        measure_training(
                            backbone, mode, ranks, batch_size, warmup, timed, Path(tmp)
                        )
                    )
                    print(json.dumps(training[-1]), file=sys.stderr)
    report = {
        "benchmark": "train",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "num_classes": NUM_CLASSES,
        "training": training,
        "data_loader": [] if args.skip_loader else measure_data_loader(),
    }
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
