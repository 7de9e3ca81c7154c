"""The make demo job end to end, at a tiny size."""

from __future__ import annotations

import csv

import pytest

from plsc_cli.engine.demo_job import DemoSettings, run_demo


@pytest.mark.slow
@pytest.mark.multirank
def test_demo_job_tiny(tmp_path):
    settings = DemoSettings(
        num_classes=6, images_per_class=12, heldout_per_class=2, epochs=2,
        lr_decay_epochs="2", batch_size=8,
    )  # fmt: skip
    exit_code = run_demo(tmp_path, settings)
    run_dir = tmp_path / "run"
    assert (tmp_path / "data" / "label.txt").is_file()
    assert (run_dir / "scalars.csv").is_file()
    with (run_dir / "validation.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # One validation per epoch on the held-out pairs.
    assert [int(r["step"]) for r in rows] == [4, 8]
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert sorted(p.name for p in run_dir.glob("ckpt-*"))
    assert exit_code == 0, (
        "the demo reported a loss that did not fall or chance accuracy"
    )
    assert float(rows[-1]["accuracy"]) > 0.5
