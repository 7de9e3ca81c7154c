"""One training rank: ``python -m plsc_cli.engine.worker <run>/config.json``.

``plsc train`` starts this module under ``paddle.distributed.launch`` once per
rank, or calls :func:`run_worker` in its own process when no ranks are launched.
Rank 0 also writes its INFO lines to ``<run>/logs/progress.log``, which the
launcher shows on the terminal. A rank that fails writes its traceback to
``<run>/logs/rank<r>.error`` before exiting, so the launcher can report it.
Every rank writes its process id to ``<run>/logs/rank<r>.pid`` when it starts.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from plsc_cli import console
from plsc_cli.config import TrainConfig
from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"
PROGRESS_FILE = "progress.log"


def error_file(run_dir: Path, rank: int) -> Path:
    return run_dir / LOGS_DIR / f"rank{rank}.error"


def message_file(run_dir: Path, rank: int) -> Path:
    """Holds the one-line summary of the rank's error."""
    return run_dir / LOGS_DIR / f"rank{rank}.message"


def error_summary(exc: BaseException) -> str:
    """Summarise `exc` in one line: a PlscError's message, else class and message."""
    text = " ".join(str(exc).split())
    if isinstance(exc, PlscError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def pid_file(run_dir: Path, rank: int) -> Path:
    """Holds the rank's process id, so the launcher can tell how it ended."""
    return run_dir / LOGS_DIR / f"rank{rank}.pid"


def run_worker(config: TrainConfig) -> object:
    """Train in this process (one rank, or one of several under the launcher)."""
    console.import_paddle()
    from plsc_cli.engine.trainer import run_training

    return run_training(config)


def _setup_rank_logging(run_dir: Path, rank: int) -> None:
    console.setup_logging()
    root = logging.getLogger("plsc_cli")
    if rank != 0:
        # Other ranks keep warnings and errors in their own workerlog.
        for handler in root.handlers:
            handler.setLevel(logging.WARNING)
        return
    console.add_log_file(run_dir)
    progress = logging.FileHandler(run_dir / LOGS_DIR / PROGRESS_FILE, encoding="utf-8")
    progress.setLevel(logging.INFO)
    progress.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(progress)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m plsc_cli.engine.worker CONFIG_JSON", file=sys.stderr)
        return 2
    # Threads were set by the launcher; this only fills in what is missing.
    console.prepare_paddle_env()
    from plsc_cli.distributed.runtime import env_rank

    config = TrainConfig.load(args[0])
    run_dir = Path(config.output_dir)
    rank = env_rank()
    (run_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    _setup_rank_logging(run_dir, rank)
    pid_file(run_dir, rank).write_text(str(os.getpid()), encoding="utf-8")
    try:
        run_worker(config)
    except BaseException as exc:
        message_file(run_dir, rank).write_text(
            error_summary(exc) + "\n", encoding="utf-8"
        )
        error_file(run_dir, rank).write_text(
            "".join(traceback.format_exception(exc)), encoding="utf-8"
        )
        logger.error("rank %d failed: %s: %s", rank, type(exc).__name__, exc)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
