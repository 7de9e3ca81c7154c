"""Benchmark the Partial FC head on CPU: step time, memory per class and capacity.

Usage::

    flock /tmp/plsc-heavy.lock python benchmarks/partial_fc.py --output pfc.json
    python benchmarks/partial_fc.py --quick --output quick.json

Sections (``--sections``, comma-separated):

- ``step``: median wall and CPU time of forward + backward + ``head.step()`` for a
  global batch of 128 and embedding size 512, after warm-up steps.
- ``memory``: persistent bytes per class for each storage dtype, from the process
  resident set size (RSS) before and after building the head, beside the
  theoretical ``2 * embedding_size * itemsize`` (centers plus momentum).
- ``capacity``: peak RSS of training at sample ratio 0.1 in bfloat16 at a few
  class counts, and a linear fit of peak RSS over class count extrapolated to
  ``--memory-gib``. Sizes whose predicted peak exceeds ``--max-rss-gib`` are not
  run, and the result marks which numbers are measured and which extrapolated.

By default every measurement runs in a fresh subprocess so that RSS numbers do not
include earlier measurements; ``--quick`` runs small sizes in this process.
The script prints a Markdown table and writes all numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GIB = 1024**3
MEMORY_MARGIN_GIB = 2.0
# Configurations with at least this many sampled classes per step take tens of
# seconds a step, so they get fewer warm-up and timed steps.
HEAVY_NUM_SAMPLE = 1_000_000
FULL = {
    "batch": 128,
    "dim": 512,
    "step_sizes": [100_000, 1_000_000, 4_000_000],
    "step_ratios": [0.1, 1.0],
    "step_dtypes": ["bfloat16", "float32"],
    # float32 at 4M classes needs 16 GiB for centers and momentum alone.
    "step_float32_max_classes": 1_000_000,
    "warmup": 2,
    "steps": 5,
    "memory_classes": 1_000_000,
    "capacity_sizes": [2_000_000, 5_000_000, 8_000_000],
}
QUICK = {
    "batch": 32,
    "dim": 64,
    "step_sizes": [20_000],
    "step_ratios": [0.1, 1.0],
    "step_dtypes": ["bfloat16"],
    "step_float32_max_classes": 20_000,
    "warmup": 1,
    "steps": 2,
    "memory_classes": 50_000,
    "capacity_sizes": [20_000, 40_000],
}


# ---------------------------------------------------------------- measurements


def read_status_kib(field: str) -> int:
    """Return a field of /proc/self/status (VmRSS, VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def available_memory_gib() -> float:
    """Return MemAvailable from /proc/meminfo in GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); return False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def build_head(num_classes: int, dim: int, ratio: float, dtype: str) -> Any:
    from plsc_cli.heads.partial_fc import PartialFC

    return PartialFC(num_classes, dim, sample_ratio=ratio, storage_dtype=dtype)


def run_steps(head: Any, batch: int, dim: int, count: int, seed: int) -> list[dict]:
    """Train ``count`` steps on random features; return per-step timings."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(seed)
    timings = []
    for _ in range(count):
        features = rng.standard_normal((batch, dim)).astype(np.float32)
        labels = rng.integers(0, head.num_classes, batch)
        local = paddle.to_tensor(features, stop_gradient=False)
        label_tensor = paddle.to_tensor(labels)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        loss = head(local, label_tensor)
        forward_end = time.perf_counter()
        loss.backward()
        backward_end = time.perf_counter()
        head.step(0.1)
        wall_end, cpu_end = time.perf_counter(), time.process_time()
        timings.append(
            {
                "forward_s": forward_end - wall_start,
                "backward_s": backward_end - forward_end,
                "update_s": wall_end - backward_end,
                "wall_s": wall_end - wall_start,
                "cpu_s": cpu_end - cpu_start,
                "loss": float(loss),
            }
        )
    return timings


def measure_step(config: dict) -> dict:
    head = build_head(
        config["num_classes"], config["dim"], config["ratio"], config["dtype"]
    )
    load_before = os.getloadavg()[0]
    run_steps(head, config["batch"], config["dim"], config["warmup"], seed=0)
    timings = run_steps(head, config["batch"], config["dim"], config["steps"], seed=1)
    result = {
        key: statistics.median(t[key] for t in timings)
        for key in ("forward_s", "backward_s", "update_s", "wall_s", "cpu_s")
    }
    result["wall_s_all"] = [t["wall_s"] for t in timings]
    result["num_sample"] = head.num_sample
    result["load_average"] = [load_before, os.getloadavg()[0]]
    result["peak_rss_gib"] = read_status_kib("VmHWM") / 1024**2
    return result


def measure_memory(config: dict) -> dict:
    import gc

    from plsc_cli.heads.partial_fc import theoretical_bytes_per_class

    gc.collect()
    before = read_status_kib("VmRSS") * 1024
    head = build_head(config["num_classes"], config["dim"], 1.0, config["dtype"])
    after = read_status_kib("VmRSS") * 1024
    state = head.shard_state()
    array_bytes = state["weight"].nbytes + state["momentum"].nbytes
    del head, state
    gc.collect()
    return {
        "measured_bytes_per_class": (after - before) / config["num_classes"],
        "theoretical_bytes_per_class": theoretical_bytes_per_class(
            config["dim"], config["dtype"]
        ),
        "array_bytes_per_class": array_bytes / config["num_classes"],
    }


def measure_capacity(config: dict) -> dict:
    peak_reset = reset_peak_rss()
    start = time.perf_counter()
    head = build_head(config["num_classes"], config["dim"], 0.1, "bfloat16")
    build_s = time.perf_counter() - start
    timings = run_steps(head, config["batch"], config["dim"], config["steps"], seed=2)
    return {
        "peak_rss_gib": read_status_kib("VmHWM") / 1024**2,
        "peak_rss_reset": peak_reset,
        "build_s": build_s,
        "median_wall_s": statistics.median(t["wall_s"] for t in timings),
        "finite_loss": all(t["loss"] == t["loss"] for t in timings),
    }


MEASUREMENTS = {
    "step": measure_step,
    "memory": measure_memory,
    "capacity": measure_capacity,
}


def run_measurement(config: dict, isolate: bool) -> dict:
    """Run one measurement, in a fresh Python process when ``isolate``."""
    if not isolate:
        return MEASUREMENTS[config["kind"]](config)
    command = [sys.executable, __file__, "--worker", json.dumps(config)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {
            "error": f"measurement failed with exit code {result.returncode}: "
            f"{result.stderr[-2000:]}"
        }
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------- sections


def step_section(sizes: dict, isolate: bool) -> list[dict]:
    rows = []
    for dtype in sizes["step_dtypes"]:
        for num_classes in sizes["step_sizes"]:
            if dtype == "float32" and num_classes > sizes["step_float32_max_classes"]:
                continue
            for ratio in sizes["step_ratios"]:
                config = {
                    "kind": "step",
                    "num_classes": num_classes,
                    "ratio": ratio,
                    "dtype": dtype,
                    "batch": sizes["batch"],
                    "dim": sizes["dim"],
                    "warmup": sizes["warmup"],
                    "steps": sizes["steps"],
                }
                if round(ratio * num_classes) >= HEAVY_NUM_SAMPLE:
                    config.update(warmup=1, steps=3)
                rows.append({**config, **run_measurement(config, isolate)})
                print(
                    f"step {dtype} {num_classes} {ratio}: {rows[-1]}", file=sys.stderr
                )
    return rows


def memory_section(sizes: dict, isolate: bool) -> list[dict]:
    rows = []
    for dtype in ("float32", "float16", "bfloat16"):
        config = {
            "kind": "memory",
            "num_classes": sizes["memory_classes"],
            "dtype": dtype,
            "dim": sizes["dim"],
        }
        rows.append({**config, **run_measurement(config, isolate)})
        print(f"memory {dtype}: {rows[-1]}", file=sys.stderr)
    return rows


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = intercept + slope * x``; return (intercept, slope)."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope /= spread
    return mean_y - slope * mean_x, slope


def capacity_section(
    sizes: dict, isolate: bool, memory_gib: float, max_rss_gib: float
) -> dict:
    measured: list[dict] = []
    summary_skipped: list[dict] = []
    for num_classes in sizes["capacity_sizes"]:
        if len(measured) >= 2:
            intercept, slope = fit_line(
                [m["num_classes"] for m in measured],
                [m["peak_rss_gib"] for m in measured],
            )
            predicted = intercept + slope * num_classes
            # Leave the other users of a shared machine some room as well.
            limit = min(max_rss_gib, available_memory_gib() - MEMORY_MARGIN_GIB)
            if predicted > limit:
                print(
                    f"capacity {num_classes}: skipped, predicted peak "
                    f"{predicted:.1f} GiB > {limit:.1f} GiB",
                    file=sys.stderr,
                )
                summary_skipped.append(
                    {"num_classes": num_classes, "predicted": predicted}
                )
                continue
        config = {
            "kind": "capacity",
            "num_classes": num_classes,
            "dim": sizes["dim"],
            "batch": sizes["batch"],
            "steps": 3,
        }
        result = run_measurement(config, isolate)
        print(f"capacity {num_classes}: {result}", file=sys.stderr)
        if "error" in result:
            break
        measured.append({**config, **result})
    summary: dict[str, Any] = {
        "measured": measured,
        "skipped": summary_skipped,
        "memory_gib": memory_gib,
    }
    if len(measured) >= 2:
        intercept, slope = fit_line(
            [m["num_classes"] for m in measured], [m["peak_rss_gib"] for m in measured]
        )
        summary["fit_intercept_gib"] = intercept
        summary["fit_bytes_per_class"] = slope * GIB
        # Noise can hide the slope at tiny sizes; then there is nothing to extrapolate.
        summary["extrapolated_max_classes"] = (
            int((memory_gib - intercept) / slope) if slope > 0 else None
        )
    if measured:
        summary["largest_measured_classes"] = max(m["num_classes"] for m in measured)
    return summary


# --------------------------------------------------------------------- output


def markdown_tables(results: dict) -> str:
    lines = []
    if results.get("step"):
        lines += [
            "| classes | ratio | storage | sampled/step | step wall s (median) | "
            "forward s | update s | CPU s | load avg |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results["step"]:
            if "error" in row:
                lines.append(f"| {row['num_classes']:,} | {row['ratio']} | error |")
                continue
            lines.append(
                f"| {row['num_classes']:,} | {row['ratio']} | {row['dtype']} | "
                f"{row['num_sample']:,} | {row['wall_s']:.3f} | "
                f"{row['forward_s']:.3f} | {row['update_s']:.3f} | "
                f"{row['cpu_s']:.3f} | {row['load_average'][0]:.1f} |"
            )
        lines.append("")
    if results.get("memory"):
        lines += [
            "| storage | measured bytes/class (RSS) | theoretical bytes/class |",
            "|---|---:|---:|",
        ]
        for row in results["memory"]:
            lines.append(
                f"| {row['dtype']} | {row['measured_bytes_per_class']:.0f} | "
                f"{row['theoretical_bytes_per_class']} |"
            )
        lines.append("")
    capacity = results.get("capacity")
    if capacity and capacity.get("measured"):
        lines += [
            "| classes (bfloat16, ratio 0.1) | peak RSS GiB | median step s |",
            "|---:|---:|---:|",
        ]
        for row in capacity["measured"]:
            lines.append(
                f"| {row['num_classes']:,} | {row['peak_rss_gib']:.2f} | "
                f"{row['median_wall_s']:.2f} |"
            )
        if capacity.get("extrapolated_max_classes"):
            lines.append(
                f"| {capacity['extrapolated_max_classes']:,} (extrapolated) | "
                f"{capacity['memory_gib']} | |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    parser.add_argument("--output", type=Path, help="write results as JSON here")
    parser.add_argument("--sections", default="step,memory,capacity")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one subprocess per measurement (default: on, off with --quick)",
    )
    parser.add_argument("--memory-gib", type=float, default=24.0)
    parser.add_argument(
        "--max-rss-gib",
        type=float,
        default=21.0,
        help="skip capacity sizes whose predicted peak RSS is above this, in GiB",
    )
    parser.add_argument(
        "--step-sizes", help="comma-separated class counts for the step section"
    )
    parser.add_argument(
        "--step-dtypes", help="comma-separated storage dtypes for the step section"
    )
    parser.add_argument(
        "--capacity-sizes", help="comma-separated class counts for the capacity section"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    # Paddle reads the thread count once, at import.
    from plsc_cli.console import prepare_paddle_env

    prepare_paddle_env()
    if args.worker:
        config = json.loads(args.worker)
        print(json.dumps(MEASUREMENTS[config["kind"]](config)))
        return

    sizes = dict(QUICK if args.quick else FULL)
    if args.step_sizes:
        sizes["step_sizes"] = [int(n) for n in args.step_sizes.split(",")]
    if args.capacity_sizes:
        sizes["capacity_sizes"] = [int(n) for n in args.capacity_sizes.split(",")]
    if args.step_dtypes:
        sizes["step_dtypes"] = args.step_dtypes.split(",")
    isolate = (not args.quick) if args.isolate is None else args.isolate
    sections = set(args.sections.split(","))
    results: dict[str, Any] = {
        "quick": args.quick,
        "sizes": sizes,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "step" in sections:
        results["step"] = step_section(sizes, isolate)
    if "memory" in sections:
        results["memory"] = memory_section(sizes, isolate)
    if "capacity" in sections:
        results["capacity"] = capacity_section(
            sizes, isolate, args.memory_gib, args.max_rss_gib
        )
    print(markdown_tables(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
