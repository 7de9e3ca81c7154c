"""The combined margin logit and its derivative."""

from __future__ import annotations

import numpy as np
import pytest

from plsc_cli.heads.margin import (
    MARGIN_PRESETS,
    resolve_margins,
    target_logit_and_slope,
)


def test_presets_have_the_standard_values() -> None:
    assert resolve_margins("arcface") == (1.0, 0.5, 0.0)
    assert resolve_margins("cosface") == (1.0, 0.0, 0.35)
    assert resolve_margins("sphereface")[1:] == (0.0, 0.0)
    assert resolve_margins("sphereface")[0] > 1.0
    assert resolve_margins([1, 0.2, 0.1]) == (1.0, 0.2, 0.1)


def test_resolve_margins_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="arcface, cosface, softmax, sphereface"):
        resolve_margins("adaface")
    with pytest.raises(ValueError, match="three numbers"):
        resolve_margins([1.0, 0.5])


@pytest.mark.parametrize("preset", sorted(MARGIN_PRESETS))
def test_logit_follows_combined_formula(preset: str) -> None:
    m1, m2, m3 = MARGIN_PRESETS[preset]
    cosine = np.linspace(-0.95, 0.95, 41)
    logit, _ = target_logit_and_slope(cosine, (m1, m2, m3), 30.0)
    expected = 30.0 * (np.cos(m1 * np.arccos(cosine) + m2) - m3)
    np.testing.assert_allclose(logit, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margins", [*MARGIN_PRESETS.values(), (1.2, 0.3, 0.1)])
def test_slope_matches_finite_differences(margins: tuple[float, float, float]) -> None:
    cosine = np.linspace(-0.9, 0.9, 19)
    _, slope = target_logit_and_slope(cosine, margins, 16.0)
    step = 1e-6
    upper, _ = target_logit_and_slope(cosine + step, margins, 16.0)
    lower, _ = target_logit_and_slope(cosine - step, margins, 16.0)
    np.testing.assert_allclose(slope, (upper - lower) / (2 * step), rtol=1e-6)


def test_slope_stays_finite_at_the_ends() -> None:
    logit, slope = target_logit_and_slope(np.array([-1.0, 1.0]), (1.0, 0.5, 0.0), 64)
    assert np.all(np.isfinite(logit))
    assert np.all(np.isfinite(slope))
