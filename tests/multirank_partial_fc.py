"""Rank script for test_partial_fc_multirank.py, run under paddle.distributed.launch.

Usage: python -m paddle.distributed.launch --nproc_per_node 2 \
    tests/multirank_partial_fc.py WORK_DIR

Reads WORK_DIR/inputs.npz (features [steps, B, D], labels [steps, B], row_splits),
trains two heads for a few steps on this rank's rows of each global batch and
writes WORK_DIR/rank<r>.npz with losses, feature gradients, sampled classes and
the final centers and momentum of this rank's shard.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist

from plsc_cli.heads.partial_fc import PartialFC

# Shared with the test: every setting that both runs must agree on.
HEAD_SETTINGS = {
    "margins": (1.0, 0.5, 0.0),
    "scale": 16.0,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "seed": 3,
    "chunk_rows": 4,
}
SAMPLE_RATIOS = {"full": 1.0, "sampled": 0.5}
LEARNING_RATE = 0.1


def train(
    head: PartialFC, features: np.ndarray, labels: np.ndarray, rows: slice
) -> dict[str, np.ndarray]:
    """Run one step per global batch on ``rows``; return what the test compares."""
    losses, grads, sampled = [], [], []
    initial_weight = np.copy(head.shard_state()["weight"])
    for step_features, step_labels in zip(features, labels, strict=True):
        local = paddle.to_tensor(step_features[rows], stop_gradient=False)
        loss = head(local, paddle.to_tensor(step_labels[rows]))
        loss.backward()
        losses.append(float(loss))
        grads.append(local.grad.numpy())
        sampled.append(head.sampled_classes())
        head.step(LEARNING_RATE)
    state = head.shard_state()
    return {
        "loss": np.array(losses),
        "feature_grad": np.stack(grads),
        "sampled": np.concatenate(sampled),
        "sampled_counts": np.array([s.size for s in sampled]),
        "initial_weight": initial_weight,
        "weight": state["weight"],
        "momentum": state["momentum"],
        "class_range": np.array([state["class_start"], state["class_end"]]),
    }


def main(work_dir: Path) -> None:
    dist.init_parallel_env()
    rank = dist.get_rank()
    inputs = np.load(work_dir / "inputs.npz")
    num_classes = int(inputs["num_classes"])
    splits = inputs["row_splits"]
    rows = slice(int(splits[rank]), int(splits[rank + 1]))
    results = {}
    for name, ratio in SAMPLE_RATIOS.items():
        head = PartialFC(
            num_classes,
            inputs["features"].shape[-1],
            sample_ratio=ratio,
            **HEAD_SETTINGS,
        )
        outputs = train(head, inputs["features"], inputs["labels"], rows)
        results.update({f"{name}_{key}": value for key, value in outputs.items()})
    np.savez(work_dir / f"rank{rank}.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
