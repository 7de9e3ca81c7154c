"""Learning-rate schedule: optional linear warm-up, then piecewise decay by epoch.

The rate is a pure function of the global step, so resuming at a step gives the
same rate without storing scheduler state.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


def learning_rate(
    step: int,
    *,
    base_lr: float,
    steps_per_epoch: int,
    decay_epochs: Sequence[int],
    decay_factor: float = 0.1,
    warmup_epochs: float = 0.0,
) -> float:
    """Return the learning rate for global step ``step`` (0-based).

    During the first ``warmup_epochs`` the rate rises linearly from
    ``base_lr / warmup_steps`` to ``base_lr``; after that it is ``base_lr`` times
    ``decay_factor`` for every decay epoch already reached.
    """
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    epoch = step // steps_per_epoch
    return base_lr * decay_factor ** bisect_right(list(decay_epochs), epoch)
