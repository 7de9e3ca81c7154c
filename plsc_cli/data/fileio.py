"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader or a rerun after a crash finds either the old file or the complete new
one, never a partial file. Temporary names start with ``.`` and end with
``.tmp`` so that :func:`remove_stale_temp_files` can clean them up.
"""

from __future__ import annotations

import os
from pathlib import Path

from plsc_cli.errors import PlscError

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """Return the per-process temporary name used while writing ``path``."""
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    temp = temp_path_for(path)
    try:
        with temp.open("wb") as f:
            f.write(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through a temporary file and a rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def remove_stale_temp_files(folder: Path) -> int:
    """Delete temporary files that an interrupted run left in ``folder``.

    Returns the number removed. Only names of the form ``.NAME.PID.tmp`` match.
    """
    removed = 0
    if not folder.is_dir():
        return removed
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") and name.endswith(TEMP_SUFFIX) and entry.is_file():
                os.unlink(entry.path)
                removed += 1
    return removed


def make_output_dir(path: Path, option: str | None = None) -> Path:
    """Create the output folder ``path``, or raise a PlscError saying why not.

    ``option`` names the CLI option that gave the path, for the message.
    """
    where = f"{option} {path}" if option else f"the output folder {path}"
    if path.exists() and not path.is_dir():
        raise PlscError(
            f"{where} is a file, not a folder; pass a new or existing "
            "folder path, or move the file away"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlscError(
            f"cannot create {where} ({exc.strerror}); pass a folder path "
            "whose parents are folders you can write to"
        ) from None
    return path
