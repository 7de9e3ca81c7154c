"""The data loader benchmark runs and reports images/s for each kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.data_loader import (
    markdown_table,
    measure_loader,
    write_benchmark_data,
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_benchmark_data(tmp_path_factory.mktemp("bench"), 4, 10)


@pytest.mark.parametrize("kind", ["recordio", "label_file"])
def test_measure_loader_files(paths: dict[str, Path], kind: str) -> None:
    result = measure_loader(kind, paths[kind], batch_size=8, num_batches=3)
    assert result["kind"] == kind
    assert result["images_per_run"] == 24
    assert len(result["images_per_s_runs"]) == 3
    assert result["images_per_s"] > 0


def test_label_folder_matches_recordio(paths: dict[str, Path]) -> None:
    label_lines = (paths["label_file"] / "label.txt").read_text().splitlines()
    assert len(label_lines) == 40
    assert label_lines[0].endswith("\t0")
    assert label_lines[-1].endswith("\t3")


def test_measure_loader_synthetic_with_workers() -> None:
    result = measure_loader(
        "synthetic", num_workers=1, batch_size=8, num_batches=2, repeats=1
    )
    assert result["num_workers"] == 1
    assert result["images_per_run"] == 16
    row = markdown_table([result]).splitlines()[-1]
    assert row.startswith("| synthetic | 1 | 8 |")


def test_measure_loader_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown loader kind"):
        measure_loader("lmdb")
