"""Convert image files to per-image kv ``.bin`` files and back.

``image2bin`` writes ``<stem>.bin`` per image with the file name as key;
``bin2image`` writes each value to a file named by its key. Folders are
converted recursively and keep their subfolder structure. Each output file is
written through a temporary name and a rename.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath

from plsc_cli.data.fileio import make_output_dir, write_bytes_atomic
from plsc_cli.data.image import IMAGE_EXTENSIONS
from plsc_cli.data.kvbin import read_kv_bin, write_kv_bin
from plsc_cli.errors import PlscError


class ConvertMode(StrEnum):
    """Conversion direction."""

    IMAGE2BIN = "image2bin"
    BIN2IMAGE = "bin2image"


def _plan(
    source: Path, target: Path, pattern: Callable[[Path], bool]
) -> list[tuple[Path, Path]]:
    """Pair each input file with its output folder: [(input, output folder)]."""
    if source.is_file():
        return [(source, target)]
    if not source.is_dir():
        raise PlscError(f"input not found: {source}")
    files = sorted(p for p in source.rglob("*") if p.is_file() and pattern(p))
    if not files:
        raise PlscError(f"{source}: no input files found")
    return [(p, target / p.parent.relative_to(source)) for p in files]


def _output_path(target: Path, name: str, input_is_file: bool) -> Path:
    """Return ``target`` itself for an input file, unless it is a folder."""
    if input_is_file and not target.is_dir():
        make_output_dir(target.parent)
        return target
    make_output_dir(target)
    return target / name


def _check_unique(outputs: dict[Path, Path], output: Path, source: Path) -> None:
    if output in outputs:
        raise PlscError(
            f"{source} and {outputs[output]} would both be written to {output}; "
            "rename one of them"
        )
    outputs[output] = source


def key_file_name(key: str, source: Path) -> str:
    """Return the file name part of a kv key, rejecting keys that name no file.

    Only the last path component is used, so a key cannot write outside the
    output folder.
    """
    name = PureWindowsPath(PurePosixPath(key).name).name
    if name in ("", ".", ".."):
        raise PlscError(f"{source}: key {key!r} is not a file name")
    return name


def images_to_bins(
    image_path: Path,
    bin_path: Path,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Write one kv ``.bin`` per image; return the number written."""
    plan = _plan(image_path, bin_path, lambda p: p.suffix.lower() in IMAGE_EXTENSIONS)
    outputs: dict[Path, Path] = {}
    for source, folder in plan:
        output = _output_path(folder, source.stem + ".bin", image_path.is_file())
        _check_unique(outputs, output, source)
    if on_start is not None:
        on_start(len(outputs))
    for output, source in outputs.items():
        write_kv_bin(output, source.name, source.read_bytes())
        if progress is not None:
            progress(1)
    return len(outputs)


def bins_to_images(
    bin_path: Path,
    image_path: Path,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Write the image file stored in each kv ``.bin``; return the number written."""
    plan = _plan(bin_path, image_path, lambda p: p.suffix.lower() == ".bin")
    if on_start is not None:
        on_start(len(plan))
    outputs: dict[Path, Path] = {}
    for source, folder in plan:
        key, value = read_kv_bin(source)
        output = _output_path(folder, key_file_name(key, source), bin_path.is_file())
        _check_unique(outputs, output, source)
        write_bytes_atomic(output, value)
        if progress is not None:
            progress(1)
    return len(outputs)


def convert(
    mode: ConvertMode | str,
    image_path: str | os.PathLike[str],
    bin_path: str | os.PathLike[str],
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> int:
    """Run one conversion direction; return the number of files written."""
    if ConvertMode(mode) is ConvertMode.IMAGE2BIN:
        return images_to_bins(Path(image_path), Path(bin_path), progress, on_start)
    return bins_to_images(Path(bin_path), Path(image_path), progress, on_start)
