"""label.txt parsing and checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from plsc_cli.data.label_file import read_label_file
from plsc_cli.errors import PlscError
from tests.conftest import shared_path


def write_dataset(folder: Path, text: str, files: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\xff\xd8\xff")
    (folder / "label.txt").write_text(text)
    return folder / "label.txt"


def test_real_ms1m_extraction() -> None:
    # A real extraction: tab separated, labels 0..9, no newline after the last line.
    path = shared_path("data", "ms1m_small", "label.txt")
    text = path.read_text()
    assert "\t" in text
    assert not text.endswith("\n")
    dataset = read_label_file(path)
    assert len(dataset) == 10
    assert dataset.labels.tolist() == list(range(10))
    assert dataset.num_classes == 10
    assert dataset.root == path.parent.resolve()
    assert dataset.paths[0] == path.parent.resolve() / "images" / "00000001.jpg"
    assert all(p.is_absolute() and p.is_file() for p in dataset.paths)


def test_space_and_float_labels(tmp_path: Path) -> None:
    path = write_dataset(
        tmp_path,
        "./a/x 1.jpg\t2\n\nb.jpg 0\nc.jpg   3.0\n",
        ["a/x 1.jpg", "b.jpg", "c.jpg"],
    )
    dataset = read_label_file(path)
    assert [p.name for p in dataset.paths] == ["x 1.jpg", "b.jpg", "c.jpg"]
    assert dataset.paths[0] == tmp_path.resolve() / "a" / "x 1.jpg"
    assert dataset.labels.tolist() == [2, 0, 3]
    assert dataset.labels.dtype.name == "int64"
    assert dataset.num_classes == 4


def test_root_override(tmp_path: Path) -> None:
    path = write_dataset(tmp_path / "meta", "img/a.jpg\t0\n", [])
    write_dataset(tmp_path / "data", "", ["img/a.jpg"])
    dataset = read_label_file(path, root=tmp_path / "data")
    assert dataset.paths == [(tmp_path / "data" / "img" / "a.jpg").resolve()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg\t0\nb.jpg\n", r"label.txt:2: expected 'path<TAB>label'"),
        ("a.jpg\t0\nb.jpg\t1\tx\n", r"label.txt:2: expected 'path<TAB>label'"),
        ("a.jpg\tcat\n", r"label.txt:1: label 'cat' is not an integer"),
        ("a.jpg\t1.5\n", r"label.txt:1: label '1.5' is not an integer"),
        ("a.jpg\t0\n\nb.jpg\t-2\n", r"label.txt:3: label -2 is out of range"),
        ("", r"label.txt: no entries"),
        ("\n \n", r"label.txt: no entries"),
    ],
    ids=["no-label", "three-fields", "word", "fraction", "negative", "empty", "blank"],
)
def test_invalid_lines(tmp_path: Path, text: str, message: str) -> None:
    path = write_dataset(tmp_path, text, ["a.jpg", "b.jpg"])
    with pytest.raises(PlscError, match=message):
        read_label_file(path)


def test_label_above_num_classes(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, "a.jpg\t0\nb.jpg\t5\nb.jpg\t7\n", ["a.jpg", "b.jpg"])
    with pytest.raises(
        PlscError, match=r"label.txt:2: label 5 is out of range; .* \[0, 5\) \(2 lines"
    ):
        read_label_file(path, num_classes=5)
    assert read_label_file(path, num_classes=8).num_classes == 8


def test_missing_files_counted(tmp_path: Path) -> None:
    lines = "".join(f"img/{i}.jpg\t0\n" for i in range(15))
    path = write_dataset(tmp_path, lines, ["img/0.jpg", "img/3.jpg"])
    with pytest.raises(PlscError) as info:
        read_label_file(path)
    message = str(info.value)
    assert "13 of 15 listed image files are missing" in message
    assert "first 10:" in message
    listed = message.split("first 10: ")[1].split("); ")[0].split(", ")
    assert [Path(p).name for p in listed] == [
        f"{i}.jpg" for i in [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
    ]
    assert len(read_label_file(path, check_files=False)) == 15


def test_missing_label_file(tmp_path: Path) -> None:
    with pytest.raises(PlscError, match="label file not found"):
        read_label_file(tmp_path / "label.txt")
