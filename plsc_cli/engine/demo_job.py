"""The embedded default job behind ``make demo``: data, extraction, training.

It needs no data and no downloads. It writes a small RecordIO dataset of
synthetic identities with held-out verification pairs and extracts it with
``plsc data extract``. Then it trains a MobileFaceNet with a Partial FC head on
two CPU ranks with ``plsc train --nproc 2`` and reports the loss curve and the
held-out verification accuracy. It exits with code 1 when the loss does not
fall or the accuracy is not above chance, so ``make demo`` doubles as an
end-to-end check.

Run it with ``python -m plsc_cli.engine.demo_job [OUTPUT_DIR]``.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from plsc_cli import console

DEFAULT_OUTPUT_DIR = Path("demo_out")
# Balanced genuine and impostor pairs, so guessing scores 0.5.
CHANCE_ACCURACY = 0.5


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo, chosen to finish in a few minutes on two CPU cores."""

    num_classes: int = 20
    """Synthetic identities in the training set."""
    images_per_class: int = 30
    """Training images per identity."""
    heldout_per_class: int = 4
    """Images per identity kept out of training for the verification pairs."""
    epochs: int = 4
    """Passes over the training set."""
    lr_decay_epochs: str = "3"
    """Epochs after which the learning rate drops to a tenth."""
    batch_size: int = 16
    """Images per rank and step."""
    scale: float = 32.0
    """Logit scale of the ArcFace margin. The usual 64 suits far more classes."""
    nproc: int = 2
    """CPU ranks."""
    seed: int = 0
    """Seed of the dataset and of the training run."""


def _plsc(*args: str) -> None:
    """Run a ``plsc`` command in a child process and fail when it fails."""
    command = [sys.executable, "-m", "plsc_cli", *args]
    console.get_console().print(f"$ plsc {' '.join(args)}", style="bold", markup=False)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(
            f"demo: 'plsc {args[0]}' failed with exit code {result.returncode}"
        )


def _read_losses(run_dir: Path) -> list[float]:
    with (run_dir / "scalars.csv").open(newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def _read_accuracies(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "validation.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [(int(row["step"]), float(row["accuracy"])) for row in csv.DictReader(f)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def run_demo(output_dir: Path, settings: DemoSettings | None = None) -> int:
    """Run the whole demo under ``output_dir`` and return the exit code."""
    settings = settings or DemoSettings()
    out = console.get_console()
    rec_dir = output_dir / "rec"
    data_dir = output_dir / "data"
    run_dir = output_dir / "run"
    # Start from scratch so that a rerun shows a complete job, not a resume.
    for folder in (rec_dir, data_dir, run_dir):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()

    # 1. Generate the dataset in the InsightFace RecordIO layout.
    from plsc_cli.data.synthetic import HELDOUT_PAIRS_FILE, write_synthetic_recordio

    out.print(
        f"generating {settings.num_classes} synthetic identities x "
        f"{settings.images_per_class} images in {rec_dir}",
        markup=False,
    )
    write_synthetic_recordio(
        rec_dir,
        num_classes=settings.num_classes,
        images_per_class=settings.images_per_class,
        seed=settings.seed,
        heldout_per_class=settings.heldout_per_class,
    )

    # 2. Extract it the way a user extracts a published dataset.
    _plsc("data", "extract", "--root-dir", str(rec_dir), "--output-dir", str(data_dir))

    # 3. Train on two CPU ranks, validating on the held-out pairs every epoch.
    _plsc(
        "train",
        "--data", str(data_dir),
        "--nproc", str(settings.nproc),
        "--backbone", "mobilefacenet",
        "--embedding-size", "128",
        "--batch-size", str(settings.batch_size),
        "--epochs", str(settings.epochs),
        "--lr", "0.1",
        "--lr-decay-epochs", settings.lr_decay_epochs,
        "--margin", "arcface",
        "--scale", str(settings.scale),
        "--seed", str(settings.seed),
        "--val-bin", str(data_dir / HELDOUT_PAIRS_FILE),
        "--output-dir", str(run_dir),
    )  # fmt: skip

    # 4. Report what the run shows.
    losses = _read_losses(run_dir)
    accuracies = _read_accuracies(run_dir)
    window = max(1, min(5, len(losses) // 4))
    first, last = _mean(losses[:window]), _mean(losses[-window:])
    minutes = (time.perf_counter() - start) / 60
    out.print(
        f"\nloss: {first:.3f} (mean of the first {window} steps) -> {last:.3f} "
        f"(mean of the last {window}) over {len(losses)} steps",
        markup=False,
    )
    for step, accuracy in accuracies:
        out.print(
            f"held-out verification accuracy at step {step}: {accuracy:.3f} "
            f"(chance {CHANCE_ACCURACY:.1f})",
            markup=False,
        )
    checkpoints = sorted(run_dir.glob("ckpt-*"), key=lambda p: int(p.name[5:]))
    if checkpoints:
        out.print(f"last checkpoint: {checkpoints[-1]}", markup=False)
    if (run_dir / "best").exists():
        out.print(f"best checkpoint: {run_dir / 'best'}", markup=False)
    out.print(
        f"logs: {run_dir / 'plsc.log'}, per rank in {run_dir / 'logs'}; "
        f"scalars: {run_dir / 'scalars.csv'}, VisualDL: {run_dir / 'vdl'}",
        markup=False,
    )
    out.print(f"demo finished in {minutes:.1f} minutes", markup=False)

    failures = []
    if not last < first:
        failures.append(f"the loss did not fall ({first:.3f} -> {last:.3f})")
    if not accuracies:
        failures.append(f"no validation result in {run_dir / 'validation.csv'}")
    elif accuracies[-1][1] <= CHANCE_ACCURACY:
        failures.append(
            f"held-out accuracy {accuracies[-1][1]:.3f} is not above chance"
        )
    for failure in failures:
        console.get_console(stderr=True).print(f"demo: {failure}", markup=False)
    return 1 if failures else 0


def main() -> None:
    console.set_verbosity(quiet=False, verbose=False, debug=False)
    output_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT_DIR
    sys.exit(run_demo(output_dir))


if __name__ == "__main__":
    main()
