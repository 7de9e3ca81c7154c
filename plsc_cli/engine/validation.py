"""Periodic validation on verification pair sets during training.

Each rank embeds its share of the images and their horizontal flips with the
backbone in eval mode and sums the two embeddings. The shares are all-gathered
and every rank runs the 10-fold protocol of :mod:`plsc_cli.eval.verification`,
so all ranks agree on the result. Sharing the work also keeps every rank within
gloo's 30 s wait for a collective.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.eval.verification import evaluate_embeddings

logger = logging.getLogger(__name__)


@dataclass
class VerificationSet:
    name: str
    images: np.ndarray  # uint8 [2N, H, W, 3] RGB
    issame: np.ndarray  # bool [N]


def load_sets(paths: list[str], log: bool = True) -> list[VerificationSet]:
    """Read the .bin pair sets given with --val-bin."""
    from plsc_cli.data.verification import load_verification_set

    sets = []
    for path in paths:
        images, issame = load_verification_set(path)
        sets.append(VerificationSet(Path(path).stem, images, issame))
        if log:
            logger.info("validation set %s: %d pairs", Path(path).stem, len(issame))
    return sets


def normalize_images(images: np.ndarray) -> np.ndarray:
    """Turn uint8 NHWC RGB images into float32 NCHW in [-1, 1]."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return (x - 127.5) / 127.5


def embed(
    forward: Any, images: np.ndarray, batch_size: int, precision: Any
) -> np.ndarray:
    """Return embedding(image) + embedding(flipped image) for uint8 NHWC images."""
    import paddle

    outputs = []
    with paddle.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalize_images(images[start : start + batch_size])
            both = np.concatenate([x, x[:, :, :, ::-1]])
            with precision.autocast():
                emb = forward(paddle.to_tensor(np.ascontiguousarray(both)))
            emb = emb.astype("float32").numpy()
            half = len(x)
            outputs.append(emb[:half] + emb[half:])
    return np.concatenate(outputs)


def validate(
    forward: Any,
    backbone: Any,
    sets: list[VerificationSet],
    batch_size: int,
    precision: Any,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, dict[str, float]]:
    """Evaluate every set; returns {set name: metrics}. Restores train mode."""
    backbone.eval()
    try:
        results = {}
        for vset in sets:
            bounds = np.linspace(0, len(vset.images), world_size + 1).astype(int)
            mine = vset.images[bounds[rank] : bounds[rank + 1]]
            local = embed(forward, mine, batch_size, precision)
            embeddings = _gather_rows(local, bounds)
            results[vset.name] = evaluate_embeddings(embeddings, vset.issame)
    finally:
        backbone.train()
    return results


def _gather_rows(local: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """All-gather each rank's rows [bounds[r], bounds[r + 1]) in rank order."""
    world_size = len(bounds) - 1
    if world_size == 1:
        return local
    import paddle
    import paddle.distributed as dist

    # all_gather needs equal shapes: pad every share to the longest one.
    longest = int(np.max(np.diff(bounds)))
    padded = np.zeros((longest, local.shape[1]), dtype=np.float32)
    padded[: len(local)] = local
    gathered: list[Any] = []
    dist.all_gather(gathered, paddle.to_tensor(padded))
    parts = [g.numpy()[: bounds[r + 1] - bounds[r]] for r, g in enumerate(gathered)]
    return np.concatenate(parts)
