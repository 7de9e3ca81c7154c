"""Shared fixtures: the real data beside the project and the gpu marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Real face data and third-party files live beside the checkout, never inside it.
SHARED_DIR = Path(os.environ.get("PLSC_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Return a path under the shared data folder, skipping the test if absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not found at {path}; set PLSC_SHARED_DIR")
    return path


@pytest.fixture
def shared() -> type:
    """Give tests ``shared.path(...)`` for files under ../shared."""

    class Shared:
        path = staticmethod(shared_path)

    return Shared


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    try:
        import paddle

        has_gpu = paddle.device.is_compiled_with_cuda() and (
            paddle.device.cuda.device_count() > 0
        )
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
