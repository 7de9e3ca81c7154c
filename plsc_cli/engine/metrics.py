"""Step lines, scalars (CSV and VisualDL) and the peak-memory reading.

Only rank 0 writes. ``scalars.csv`` in the run folder gets one row per step:
step, epoch, loss, lr, samples/s. ``validation.csv`` gets one row per
validation set and validation: step, set name, accuracy, its standard deviation
over the folds, threshold and pair count. VisualDL scalars go to ``<run>/vdl``
when visualdl is installed.
"""

from __future__ import annotations

import csv
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCALARS_FILE = "scalars.csv"
SCALAR_FIELDS = ("step", "epoch", "loss", "lr", "samples_per_s", "data_wait")
VALIDATION_FILE = "validation.csv"
VALIDATION_FIELDS = ("step", "set", "accuracy", "accuracy_std", "threshold", "pairs")


def peak_memory_gib(device: str) -> float:
    """Return peak memory in GiB: allocated on the GPU, resident set on CPU."""
    if device == "gpu":
        import paddle

        return paddle.device.cuda.max_memory_allocated() / 2**30
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ScalarWriter:
    """Append scalars to scalars.csv and, when available, VisualDL."""

    def __init__(self, run_dir: Path, start_step: int) -> None:
        self.path = run_dir / SCALARS_FILE
        self._drop_rows_after(start_step)
        new_file = not self.path.exists()
        self._file = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        if new_file:
            self._csv.writerow(SCALAR_FIELDS)
        self._vdl: Any = None
        try:
            from visualdl import LogWriter
        except ImportError:
            logger.debug("visualdl is not installed; writing scalars.csv only")
        else:
            self._vdl = LogWriter(logdir=str(run_dir / "vdl"))

    def _drop_rows_after(self, start_step: int) -> None:
        """Remove rows after start_step, left by a run that went on past its last
        checkpoint."""
        for path in (self.path, self.path.parent / VALIDATION_FILE):
            if not path.exists():
                continue
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            if not rows:
                continue
            kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= start_step]
            if len(kept) != len(rows):
                with open(path, "w", newline="", encoding="utf-8") as f:
                    csv.writer(f).writerows(kept)

    def add_step(self, values: dict[str, float]) -> None:
        self._csv.writerow([values[name] for name in SCALAR_FIELDS])
        self._file.flush()
        if self._vdl is not None:
            step = int(values["step"])
            for name in ("loss", "lr", "samples_per_s"):
                self._vdl.add_scalar(tag=f"train/{name}", value=values[name], step=step)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        if self._vdl is not None:
            self._vdl.add_scalar(tag=tag, value=value, step=step)

    def add_validation(self, step: int, name: str, metrics: dict[str, float]) -> None:
        """Append one validation result to validation.csv and VisualDL."""
        path = self.path.parent / VALIDATION_FILE
        new_file = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(VALIDATION_FIELDS)
            writer.writerow(
                [
                    step,
                    name,
                    metrics["accuracy"],
                    metrics["accuracy_std"],
                    metrics["threshold"],
                    int(metrics["num_pairs"]),
                ]
            )
        self.add_scalar(f"val/{name}", metrics["accuracy"], step)

    def close(self) -> None:
        self._file.close()
        if self._vdl is not None:
            self._vdl.close()


class StepMeter:
    """Timing of steps and data waits between two step lines."""

    def __init__(self, total_steps: int, start_step: int) -> None:
        self.total_steps = total_steps
        self.start_step = start_step
        self.start_time = time.perf_counter()
        self._window_start = self.start_time
        self._window_steps = 0
        self._window_wait = 0.0

    def add(self, data_wait: float) -> None:
        self._window_steps += 1
        self._window_wait += data_wait

    def window(self, step: int) -> dict[str, float]:
        """Return step time and data-wait share since the last call, then reset."""
        now = time.perf_counter()
        elapsed = max(now - self._window_start, 1e-9)
        steps = max(self._window_steps, 1)
        done = step - self.start_step
        rate = done / max(now - self.start_time, 1e-9)
        remaining = (self.total_steps - step) / rate if rate > 0 else 0.0
        result = {
            "seconds_per_step": elapsed / steps,
            "data_wait_share": self._window_wait / elapsed,
            "eta": remaining,
        }
        self._window_start = now
        self._window_steps = 0
        self._window_wait = 0.0
        return result


def format_step_line(
    *,
    step: int,
    total_steps: int,
    epoch: int,
    epochs: int,
    loss: float,
    lr: float,
    global_batch: int,
    world_size: int,
    window: dict[str, float],
    memory_gib: float,
) -> str:
    """Build the step line: progress, loss, lr, throughput, memory, data wait, ETA."""
    samples_per_s = global_batch / window["seconds_per_step"]
    width = len(str(total_steps))
    return (
        f"step {step:>{width}}/{total_steps} epoch {epoch + 1}/{epochs} "
        f"loss {loss:.4f} lr {lr:.5f} "
        f"img/s {samples_per_s:,.1f} ({samples_per_s / world_size:,.1f}/device) "
        f"mem {memory_gib:.2f} GiB data {window['data_wait_share']:.0%} "
        f"eta {format_duration(window['eta'])}"
    )


def cpu_count() -> int:
    """Return the CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
