"""``label.txt`` datasets: one ``path<TAB>label`` line per image.

Paths are relative to the folder of ``label.txt`` (``images/00000001.jpg``,
``./Name/file.jpg``) or absolute. Lines without a tab are split at the last run
of whitespace, so space-separated files load too. Labels are integers in
``[0, num_classes)``; ``3.0`` is read as 3 because some tools write floats.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plsc_cli.errors import PlscError

EXAMPLE_LINE = "images/00000001.jpg<TAB>0"
MAX_LISTED_MISSING = 10


@dataclass(frozen=True)
class LabelDataset:
    """Images and integer labels read from a ``label.txt``."""

    root: Path  # relative paths resolve against it; by default label.txt's folder
    paths: list[Path]  # absolute image paths, in file order
    labels: np.ndarray  # int64, one per path
    num_classes: int

    def __len__(self) -> int:
        return len(self.paths)


def _split_line(line: str) -> list[str]:
    if "\t" in line:
        return [field.strip() for field in line.split("\t")]
    return line.rsplit(maxsplit=1)


def _parse_label(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        value = float(text)  # raises ValueError for text that is not a number
        if not value.is_integer():
            raise ValueError(f"{text} is not a whole number") from None
        return int(value)


def parse_label_lines(path: Path) -> tuple[list[str], list[int], list[int]]:
    """Parse ``path`` into (image path strings, labels, line numbers)."""
    names: list[str] = []
    labels: list[int] = []
    line_numbers: list[int] = []
    try:
        with path.open("r", encoding="utf-8") as f:
            for line_no, raw in enumerate(f, 1):
                line = raw.strip()
                if not line:
                    continue
                fields = _split_line(line)
                if len(fields) != 2 or not fields[0]:
                    raise PlscError(
                        f"{path}:{line_no}: expected 'path<TAB>label' like "
                        f"'{EXAMPLE_LINE}', got {line!r}"
                    )
                try:
                    label = _parse_label(fields[1])
                except ValueError:
                    raise PlscError(
                        f"{path}:{line_no}: label {fields[1]!r} is not an integer"
                    ) from None
                names.append(fields[0])
                labels.append(label)
                line_numbers.append(line_no)
    except UnicodeDecodeError as exc:
        raise PlscError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    return names, labels, line_numbers


def _check_label_range(
    path: Path, labels: np.ndarray, line_numbers: list[int], num_classes: int | None
) -> int:
    bad = labels < 0
    if num_classes is not None:
        bad |= labels >= num_classes
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        valid = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        raise PlscError(
            f"{path}:{line_numbers[first]}: label {int(labels[first])} is out of "
            f"range; labels must be integers {valid} ({int(bad.sum())} lines "
            "affected)"
        )
    return num_classes if num_classes is not None else int(labels.max()) + 1


def find_missing_files(paths: list[Path]) -> list[Path]:
    """Return the paths that do not exist, listing each folder only once."""
    by_folder: dict[Path, list[Path]] = defaultdict(list)
    for path in paths:
        by_folder[path.parent].append(path)
    missing: list[Path] = []
    for folder, folder_paths in by_folder.items():
        try:
            present = set(os.listdir(folder))
        except OSError:
            present = set()
        missing.extend(p for p in folder_paths if p.name not in present)
    return missing


def read_label_file(
    path: str | os.PathLike[str],
    num_classes: int | None = None,
    check_files: bool = True,
    root: str | os.PathLike[str] | None = None,
) -> LabelDataset:
    """Read and check a ``label.txt`` dataset.

    Relative image paths resolve against ``root``, by default the folder of the
    label file. ``num_classes`` defaults to the largest label + 1. With
    ``check_files``, every listed image must exist. Raises :class:`PlscError`
    with the file and line for a line that does not parse or a label out of
    range, for a file without entries, and with the count and the first ten
    paths for missing images.
    """
    path = Path(path)
    if not path.is_file():
        raise PlscError(f"label file not found: {path}")
    names, label_list, line_numbers = parse_label_lines(path)
    if not names:
        raise PlscError(
            f"{path}: no entries; expected one 'path<TAB>label' line per image, "
            f"like '{EXAMPLE_LINE}'"
        )
    labels = np.asarray(label_list, dtype=np.int64)
    num_classes = _check_label_range(path, labels, line_numbers, num_classes)

    root_dir = Path(root).resolve() if root is not None else path.parent.resolve()
    paths = [root_dir / name for name in names]
    if check_files:
        missing = find_missing_files(paths)
        if missing:
            listed = ", ".join(str(p) for p in missing[:MAX_LISTED_MISSING])
            raise PlscError(
                f"{path}: {len(missing)} of {len(paths)} listed image files are "
                f"missing (first {min(len(missing), MAX_LISTED_MISSING)}: {listed}); "
                "fix the paths or the files and rerun"
            )
    return LabelDataset(
        root=root_dir, paths=paths, labels=labels, num_classes=num_classes
    )
