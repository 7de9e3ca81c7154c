"""Periodic validation on verification pair sets during training.

Rank 0 embeds every image and its horizontal flip with the backbone in eval
mode, sums the two embeddings and runs the 10-fold protocol of
:mod:`plsc_cli.eval.verification`. The other ranks wait at the next collective.
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


def load_sets(paths: list[str]) -> list[VerificationSet]:
    """Read the .bin pair sets given with --val-bin."""
    from plsc_cli.data.verification import load_verification_set

    sets = []
    for path in paths:
        images, issame = load_verification_set(path)
        sets.append(VerificationSet(Path(path).stem, images, issame))
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
) -> dict[str, dict[str, float]]:
    """Evaluate every set; returns {set name: metrics}. Restores train mode."""
    backbone.eval()
    try:
        results = {}
        for vset in sets:
            embeddings = embed(forward, vset.images, batch_size, precision)
            results[vset.name] = evaluate_embeddings(embeddings, vset.issame)
    finally:
        backbone.train()
    return results
