"""Training precision: float32, or pure FP16 with dynamic loss scaling on GPU.

Pure FP16 (Paddle AMP level O2) keeps the backbone's weights and activations in
float16; the optimizer keeps float32 master weights. The loss scale multiplies
the gradient that flows from the head into the backbone, not the head's own
gradients: the head keeps its own storage dtype and computes its update in
float32, so only the backbone's float16 backward needs protection from
underflow. A step whose backbone gradients hold inf or nan is skipped on every
rank and the scale is halved; after ``growth_interval`` finite steps it doubles.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class LossScaler:
    """Dynamic loss scale; its state is saved with every checkpoint."""

    scale: float = 2.0**15
    growth_interval: int = 2000
    good_steps: int = 0
    skipped_steps: int = 0

    def update(self, finite: bool, step: int) -> None:
        """Halve the scale after an overflow, double it after a run of good steps."""
        if not finite:
            self.scale = max(self.scale / 2.0, 1.0)
            self.good_steps = 0
            self.skipped_steps += 1
            logger.warning(
                "step %d skipped: inf or nan in the gradients; loss scale now %g",
                step,
                self.scale,
            )
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= 2.0
            self.good_steps = 0

    def state(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "good_steps": self.good_steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.skipped_steps = int(state["skipped_steps"])


class Precision:
    """Float32 (CPU, or GPU with --no-fp16) or pure FP16 (GPU)."""

    def __init__(self, fp16: bool) -> None:
        self.fp16 = fp16
        self.scaler = LossScaler() if fp16 else None

    def describe(self, device: str, head_dtype: str) -> str:
        """Return the start-up log line that names the precision in use."""
        if self.fp16:
            return (
                f"precision: pure FP16 on {device} (AMP O2, float32 master "
                f"weights, dynamic loss scaling); class centers stored in "
                f"{head_dtype}"
            )
        return f"precision: float32 on {device}; class centers stored in {head_dtype}"

    def decorate(self, backbone: Any) -> Any:
        """Cast the backbone to float16 (batch norm stays float32) for pure FP16."""
        if not self.fp16:
            return backbone
        import paddle

        return paddle.amp.decorate(models=backbone, level="O2", dtype="float16")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if not self.fp16:
            yield
            return
        import paddle

        with paddle.amp.auto_cast(level="O2", dtype="float16"):
            yield

    @property
    def grad_scale(self) -> float:
        """Factor applied to the gradient entering the backbone."""
        return self.scaler.scale if self.scaler is not None else 1.0


def scale_gradient(tensor: Any, factor: float) -> Any:
    """Return ``tensor`` unchanged; its gradient is multiplied by ``factor``."""
    if factor == 1.0:
        return tensor
    from paddle.autograd import PyLayer

    class _ScaleGradient(PyLayer):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            return x.clone()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad * factor

    return _ScaleGradient.apply(tensor)
