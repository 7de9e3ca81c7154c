"""Class-center sampling for Partial FC on one rank's shard of the classes.

Each step a rank keeps every class of its shard that is a label in the global
batch (the positives) and fills up to ``num_sample`` with negatives drawn uniformly
without replacement from the rest of its shard. This matches
``paddle.nn.functional.class_center_sample``: the sampled list starts with the
positives in ascending order, labels are remapped to their position in that list,
and all positives are kept when they outnumber ``num_sample``. Paddle returns the
negatives in random order, this module in ascending order, which makes the row
gathers cache-friendly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plsc_cli.distributed.shard import ClassShard


@dataclass(frozen=True)
class SampledClasses:
    """The classes one rank uses in one step."""

    indices: np.ndarray
    """Sampled classes as int64 indices into the shard: positives, then negatives."""
    remapped_labels: np.ndarray
    """Per global-batch row, the position of its label in ``indices``, or -1 when the
    label belongs to another rank's shard."""
    num_positive: int


def num_samples_for_ratio(sample_ratio: float, num_local: int) -> int:
    """Return ``round(sample_ratio * num_local)``, at least 1 and at most num_local."""
    if not 0.0 < sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be in (0, 1], got {sample_ratio}")
    return min(num_local, max(1, round(sample_ratio * num_local)))


def sample_classes(
    labels: np.ndarray, shard: ClassShard, num_sample: int, seed: int, step: int
) -> SampledClasses:
    """Sample the shard's class centers for one step of the global batch ``labels``.

    The negatives depend only on ``(seed, step, shard.start)``, so a resumed run
    draws the same classes and ranks draw independently of each other.
    """
    labels = np.asarray(labels, dtype=np.int64)
    in_shard = (labels >= shard.start) & (labels < shard.end)
    remapped = np.full(labels.shape, -1, dtype=np.int64)
    if num_sample >= shard.num_local:
        indices = np.arange(shard.num_local, dtype=np.int64)
        remapped[in_shard] = labels[in_shard] - shard.start
        num_positive = int(np.unique(labels[in_shard]).size)
        return SampledClasses(indices, remapped, num_positive)

    positives = np.unique(labels[in_shard] - shard.start)
    remapped[in_shard] = np.searchsorted(positives, labels[in_shard] - shard.start)
    num_negative = max(0, num_sample - positives.size)
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, shard.start]))
    draws = rng.choice(
        shard.num_local - positives.size, num_negative, replace=False, shuffle=False
    )
    # Map draws from [0, num_local - P) onto the classes that are not positives:
    # the r-th such class is r plus the number of positives p_k with p_k - k <= r.
    offsets = positives - np.arange(positives.size)
    negatives = np.sort(draws + np.searchsorted(offsets, draws, side="right"))
    indices = np.concatenate([positives, negatives]).astype(np.int64, copy=False)
    return SampledClasses(indices, remapped, int(positives.size))
