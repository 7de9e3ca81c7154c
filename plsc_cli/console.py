"""Console output, logging setup, progress bars and Paddle's environment.

Library code logs through ``logging.getLogger(__name__)``; only ``plsc_cli.cli``
prints. Everything here is cheap to import: rich and paddle load lazily.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

T = TypeVar("T")

_state = {"quiet": False, "verbose": False, "debug": False}
_consoles: dict[str, Console] = {}
LOG_FILE_NAME = "plsc.log"


def set_verbosity(*, quiet: bool, verbose: bool, debug: bool) -> None:
    """Set the process-wide output level used by logging and progress bars."""
    _state.update(quiet=quiet, verbose=verbose, debug=debug)
    os.environ["PLSC_VERBOSE"] = "1" if verbose else "0"
    os.environ["PLSC_QUIET"] = "1" if quiet else "0"
    setup_logging()


def is_quiet() -> bool:
    return _state["quiet"] or os.environ.get("PLSC_QUIET") == "1"


def is_verbose() -> bool:
    return _state["verbose"] or os.environ.get("PLSC_VERBOSE") == "1"


def is_debug() -> bool:
    return _state["debug"] or os.environ.get("PLSC_DEBUG") == "1"


def get_console(stderr: bool = False) -> Console:
    """Return the shared rich console for stdout, or for stderr."""
    key = "err" if stderr else "out"
    if key not in _consoles:
        from rich.console import Console

        _consoles[key] = Console(stderr=stderr, highlight=False, soft_wrap=True)
    return _consoles[key]


class _RichHandler(logging.Handler):
    """Print log records on stderr through rich, one plain line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            style = {logging.WARNING: "yellow", logging.ERROR: "red"}.get(
                record.levelno
            )
            if record.levelno >= logging.WARNING:
                message = f"{record.levelname.lower()}: {message}"
            get_console(stderr=True).print(message, style=style, markup=False)
        except Exception:
            self.handleError(record)


def setup_logging() -> None:
    """Route the ``plsc_cli`` loggers to the console at the chosen level."""
    logger = logging.getLogger("plsc_cli")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        if isinstance(handler, _RichHandler):
            logger.removeHandler(handler)
    handler = _RichHandler()
    if is_quiet():
        handler.setLevel(logging.WARNING)
    elif is_verbose():
        handler.setLevel(logging.DEBUG)
    else:
        handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)


def add_log_file(output_dir: str | os.PathLike[str], name: str = LOG_FILE_NAME) -> Path:
    """Append every ``plsc_cli`` log record at DEBUG level to ``output_dir/name``."""
    path = Path(output_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("plsc_cli")
    for handler in list(logger.handlers):
        if not isinstance(handler, logging.FileHandler):
            continue
        if Path(handler.baseFilename) == path.resolve():
            return path
        # A log file of an earlier command in this process (tests run several)
        # belongs to that command's folder only.
        if Path(handler.baseFilename).name == name:
            logger.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logger.addHandler(handler)
    return path


def make_progress(transient: bool = False) -> Progress:
    """Build the one progress-bar style that every command uses.

    Columns: description, bar, done/total count, rate in items/s, elapsed and ETA.
    Hidden with ``--quiet``.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=get_console(stderr=True),
        disable=is_quiet(),
        transient=transient,
    )


def track(
    items: Iterable[T], total: int | None, description: str, unit: str = "it"
) -> Iterator[T]:
    """Yield from ``items`` while showing a progress bar with count, rate and ETA."""
    import time

    progress = make_progress()
    with progress:
        task = progress.add_task(description, total=total, rate="")
        start = time.perf_counter()
        done = 0
        for item in items:
            yield item
            done += 1
            elapsed = max(time.perf_counter() - start, 1e-9)
            progress.update(task, advance=1, rate=f"{done / elapsed:,.0f} {unit}/s")


def prepare_paddle_env(num_threads: int | None = None) -> None:
    """Set Paddle's environment before ``import paddle``.

    Silences Paddle's C++ log lines and Python warnings unless ``--verbose``, and
    sets the CPU thread count: Paddle sets ``OMP_NUM_THREADS=1`` on import when it
    is unset, which halves CPU matmul speed on two cores.
    """
    if not is_verbose():
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("GLOG_v", "0")
        os.environ.setdefault("FLAGS_call_stack_level", "0")
        warnings.filterwarnings("ignore", module="paddle")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="paddle.*")
    if num_threads is None:
        num_threads = os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, num_threads)))
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])


def import_paddle():  # noqa: ANN201 - returns the paddle module
    """Import paddle with the environment from :func:`prepare_paddle_env`.

    Unless ``--verbose``, what Paddle prints on import is dropped: Paddle 3.3
    prints a two-line warning to stderr whenever OMP_NUM_THREADS is above 1.
    """
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    prepare_paddle_env()
    if is_verbose():
        import paddle

        return paddle
    import contextlib
    import io

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            import paddle
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    return paddle
