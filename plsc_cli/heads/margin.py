"""The combined angular margin ``s * (cos(m1 * theta + m2) - m3)`` on target logits.

``theta`` is the angle between a normalised feature and its class center. The
presets select the usual losses: ArcFace adds the angle margin ``m2``, CosFace
subtracts the cosine margin ``m3`` and SphereFace-style losses multiply the angle
by ``m1``. Non-target logits are ``s * cos(theta)``. The same formula is what
``paddle.nn.functional.margin_cross_entropy`` computes on GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MARGIN_PRESETS: dict[str, tuple[float, float, float]] = {
    "arcface": (1.0, 0.5, 0.0),
    "cosface": (1.0, 0.0, 0.35),
    "sphereface": (1.35, 0.0, 0.0),
    "softmax": (1.0, 0.0, 0.0),
}

# The angle is taken of the cosine clipped to [-1 + eps, 1 - eps], so that the
# derivative d theta / d cos = -1 / sin(theta) stays finite at theta = 0 and pi.
COSINE_CLIP_EPS = 1e-6


def resolve_margins(margins: str | Sequence[float]) -> tuple[float, float, float]:
    """Return ``(m1, m2, m3)`` for a preset name or a sequence of three numbers."""
    if isinstance(margins, str):
        if margins not in MARGIN_PRESETS:
            choices = ", ".join(sorted(MARGIN_PRESETS))
            raise ValueError(
                f"unknown margin preset {margins!r}; choose one of {choices}"
            )
        return MARGIN_PRESETS[margins]
    values = tuple(float(value) for value in margins)
    if len(values) != 3:
        raise ValueError(f"margins must be three numbers (m1, m2, m3), got {margins!r}")
    m1, m2, m3 = values
    return m1, m2, m3


def target_logit_and_slope(
    cosine: np.ndarray, margins: tuple[float, float, float], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return the margin target logit and its derivative with respect to ``cosine``.

    Computed in float64. Without an angle margin (``m1 == 1`` and ``m2 == 0``) the
    logit is ``scale * (cosine - m3)`` with slope ``scale``, and no clipping applies.
    """
    m1, m2, m3 = margins
    cosine = np.asarray(cosine, dtype=np.float64)
    if m1 == 1.0 and m2 == 0.0:
        return scale * (cosine - m3), np.full_like(cosine, scale)
    clipped = np.clip(cosine, -1.0 + COSINE_CLIP_EPS, 1.0 - COSINE_CLIP_EPS)
    theta = np.arccos(clipped)
    angle = m1 * theta + m2
    logit = scale * (np.cos(angle) - m3)
    # d/dcos cos(m1 * theta + m2) = m1 * sin(m1 * theta + m2) / sin(theta).
    slope = scale * m1 * np.sin(angle) / np.sin(theta)
    return logit, slope
