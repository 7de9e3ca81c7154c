"""The training loop in one process with stand-in head and data: modes,
checkpoints and exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from plsc_cli.config import TrainConfig
from tests.train_standins import StandinData, StandinHead


def _components():
    from plsc_cli.engine.trainer import Components
    from plsc_cli.models import build_backbone

    return Components(
        build_backbone,
        lambda **kw: StandinHead(**kw),
        lambda config, rank, world: StandinData(batch_size=config.batch_size),
    )


def _config(run_dir: Path, **overrides) -> TrainConfig:
    values = dict(
        backbone="mobilefacenet",
        embedding_size=32,
        data="synthetic:4",
        batch_size=4,
        epochs=2,
        lr=0.05,
        lr_decay_epochs=[1],
        output_dir=str(run_dir),
        log_every=100,
        device="cpu",
        workers=0,
        keep_last=10,
    )
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(autouse=True)
def _single_rank_class_ranges(monkeypatch):
    # The stand-in head owns every class; ClassShard comes with PartialFC.
    from plsc_cli.engine import trainer

    monkeypatch.setattr(
        trainer.Trainer, "_class_ranges", lambda self: [[0, self.num_classes]]
    )


def _train(config: TrainConfig):
    from plsc_cli.engine.trainer import run_training

    return run_training(config, _components())


@pytest.mark.slow
def test_static_matches_dynamic(tmp_path):
    dynamic = _train(_config(tmp_path / "dynamic", mode="dynamic", max_steps=6))
    static = _train(_config(tmp_path / "static", mode="static", max_steps=6))
    assert len(static.losses) == 6
    # Same kernels on CPU; compiling may reorder float sums, hence a tolerance.
    np.testing.assert_allclose(static.losses, dynamic.losses, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_resume_repeats_losses(tmp_path):
    straight = _train(_config(tmp_path / "straight"))
    assert straight.steps == 12

    # Stop at step 5 (mid-epoch), then continue in a fresh Trainer.
    first = _train(_config(tmp_path / "run", max_steps=5))
    assert first.last_checkpoint.name == "ckpt-5"
    resumed = _train(_config(tmp_path / "run", resume="auto"))
    assert resumed.steps == 12
    np.testing.assert_array_equal(resumed.losses, straight.losses[5:])

    rows = (tmp_path / "run" / "scalars.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 13))


def test_checkpoint_layout_and_pruning(tmp_path):
    run = tmp_path / "run"
    result = _train(_config(run, save_every=2, keep_last=2, max_steps=6))
    names = sorted(p.name for p in run.iterdir() if p.name.startswith("ckpt-"))
    assert names == ["ckpt-4", "ckpt-6"]
    assert not list(run.glob(".ckpt-*"))
    ckpt = result.last_checkpoint
    files = sorted(p.name for p in ckpt.iterdir())
    assert files == [
        "backbone.npz",
        "head-rank0.npz",
        "meta.json",
        "optimizer.npz",
        "rng-rank0.json",
    ]
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == 6
    assert meta["world_size"] == 1
    assert meta["config"]["backbone"] == "mobilefacenet"
    for name in ("backbone.npz", "optimizer.npz", "head-rank0.npz"):
        with np.load(ckpt / name, allow_pickle=False) as data:
            assert data.files


def test_incomplete_checkpoint_is_ignored(tmp_path):
    from plsc_cli.engine.checkpoint import latest_checkpoint

    run = tmp_path / "run"
    result = _train(_config(run, max_steps=2, epochs=1))
    broken = run / "ckpt-99"
    shutil.copytree(result.last_checkpoint, broken)
    (broken / "meta.json").unlink()
    assert latest_checkpoint(run) == result.last_checkpoint


def test_resume_rejects_other_backbone(tmp_path):
    from plsc_cli.errors import PlscError

    run = tmp_path / "run"
    _train(_config(run, max_steps=1, epochs=1))
    with pytest.raises(PlscError, match="backbone"):
        _train(_config(run, backbone="iresnet18", resume="auto"))
