"""Two CPU ranks (gloo) against one rank and the NumPy reference, odd class count.

The ranks get 5 and 3 rows of each global batch of 8, which also exercises the
padded all-gather for uneven local batches.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from plsc_cli.heads.partial_fc import PartialFC
from tests.multirank_partial_fc import (
    HEAD_SETTINGS,
    LEARNING_RATE,
    SAMPLE_RATIOS,
    train,
)
from tests.pfc_reference import margin_softmax_reference, momentum_update_reference

NUM_CLASSES, DIM, BATCH, STEPS = 37, 16, 8, 3
ROW_SPLITS = np.array([0, 5, 8])
SCRIPT = Path(__file__).with_name("multirank_partial_fc.py")


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-5) -> None:
    atol = rtol * float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work_dir = tmp_path_factory.mktemp("multirank")
    rng = np.random.default_rng(0)
    features = rng.standard_normal((STEPS, BATCH, DIM)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (STEPS, BATCH))
    np.savez(
        work_dir / "inputs.npz",
        features=features,
        labels=labels,
        row_splits=ROW_SPLITS,
        num_classes=NUM_CLASSES,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    command = [
        sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--nproc_per_node",
        "2",
        "--log_dir",
        str(work_dir / "logs"),
        str(SCRIPT),
        str(work_dir),
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    logs = "".join(p.read_text() for p in sorted((work_dir / "logs").glob("*")))
    assert result.returncode == 0, f"launch failed:\n{result.stderr[-3000:]}\n{logs}"
    ranks = [dict(np.load(work_dir / f"rank{r}.npz")) for r in range(2)]
    return {"features": features, "labels": labels, "ranks": ranks}


def single_rank(two_rank_run: dict, name: str) -> dict:
    head = PartialFC(
        NUM_CLASSES, DIM, sample_ratio=SAMPLE_RATIOS[name], **HEAD_SETTINGS
    )
    return train(head, two_rank_run["features"], two_rank_run["labels"], slice(None))


@pytest.mark.multirank
def test_shards_split_odd_class_count(two_rank_run: dict) -> None:
    ranks = two_rank_run["ranks"]
    assert ranks[0]["full_class_range"].tolist() == [0, 19]
    assert ranks[1]["full_class_range"].tolist() == [19, 37]
    initial = np.concatenate([r["full_initial_weight"] for r in ranks])
    np.testing.assert_array_equal(
        initial, single_rank(two_rank_run, "full")["initial_weight"]
    )


@pytest.mark.multirank
def test_two_ranks_match_one_rank(two_rank_run: dict) -> None:
    ranks = two_rank_run["ranks"]
    single = single_rank(two_rank_run, "full")
    feature_grad = np.concatenate([r["full_feature_grad"] for r in ranks], axis=1)
    weight = np.concatenate([r["full_weight"] for r in ranks])
    momentum = np.concatenate([r["full_momentum"] for r in ranks])

    assert_close(ranks[0]["full_loss"], single["loss"])
    assert_close(ranks[1]["full_loss"], single["loss"])
    for step in range(STEPS):
        assert_close(feature_grad[step], single["feature_grad"][step])
    assert_close(weight, single["weight"])
    assert_close(momentum, single["momentum"])


@pytest.mark.multirank
def test_two_sampled_ranks_match_reference(two_rank_run: dict) -> None:
    ranks = two_rank_run["ranks"]
    weight = np.concatenate([r["sampled_initial_weight"] for r in ranks])
    weight = weight.astype(np.float64)
    velocity = np.zeros_like(weight)
    sampled_per_rank = [
        np.split(r["sampled_sampled"], np.cumsum(r["sampled_sampled_counts"])[:-1])
        for r in ranks
    ]
    margins, scale = HEAD_SETTINGS["margins"], HEAD_SETTINGS["scale"]
    for step in range(STEPS):
        classes = np.concatenate([sampled[step] for sampled in sampled_per_rank])
        labels = two_rank_run["labels"][step]
        loss, grad_x, grad_w = margin_softmax_reference(
            weight, two_rank_run["features"][step], labels, margins, scale, classes
        )
        feature_grad = np.concatenate([r["sampled_feature_grad"][step] for r in ranks])

        assert np.isin(labels, classes).all()
        assert classes.size == 10 + 9  # round(0.5 * 19) and round(0.5 * 18)
        assert_close(ranks[0]["sampled_loss"][step], loss)
        assert_close(ranks[1]["sampled_loss"][step], loss)
        assert_close(feature_grad, grad_x)

        weight[classes], velocity[classes] = momentum_update_reference(
            weight[classes],
            velocity[classes],
            grad_w,
            LEARNING_RATE,
            HEAD_SETTINGS["momentum"],
            HEAD_SETTINGS["weight_decay"],
        )
    assert_close(np.concatenate([r["sampled_weight"] for r in ranks]), weight)
    assert_close(np.concatenate([r["sampled_momentum"] for r in ranks]), velocity)
