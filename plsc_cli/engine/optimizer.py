"""SGD with momentum and L2 weight decay for the backbone, with master weights.

The update is Paddle's ``Momentum`` with ``L2Decay``::

    g = grad + weight_decay * w
    v = momentum * v + g
    w = w - lr * v

Its state is keyed by the parameter's structured name (``layer1.0.conv1.weight``).
Paddle's generated variable names depend on how many layers the process built
before, so keying by them would tie a checkpoint to one process. With float16
parameters the update runs on a float32 master copy, which is then cast back.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class MomentumSGD:
    """Momentum SGD over a layer's trainable parameters."""

    def __init__(
        self, layer: Any, momentum: float, weight_decay: float, lr: float = 0.0
    ) -> None:
        import paddle

        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr = lr
        self.params: dict[str, Any] = {
            name: p for name, p in layer.named_parameters() if not p.stop_gradient
        }
        self.velocity: dict[str, Any] = {}
        self.master: dict[str, Any] = {}
        for name, p in self.params.items():
            self.velocity[name] = paddle.zeros(p.shape, dtype="float32")
            if p.dtype != paddle.float32:
                self.master[name] = p.astype("float32")

    def set_lr(self, lr: float) -> None:
        self.lr = lr

    def step(self) -> None:
        import paddle

        with paddle.no_grad():
            for name, p in self.params.items():
                if p.grad is None:
                    continue
                weight = self.master.get(name, p)
                grad = p.grad.astype("float32")
                if self.weight_decay:
                    grad = grad + self.weight_decay * weight
                velocity = self.velocity[name]
                paddle.assign(velocity * self.momentum + grad, output=velocity)
                paddle.assign(weight - self.lr * velocity, output=weight)
                if name in self.master:
                    paddle.assign(weight.astype(p.dtype), output=p)

    def clear_grad(self) -> None:
        for p in self.params.values():
            p.clear_gradient()

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        return {
            "velocity": {k: v.numpy() for k, v in self.velocity.items()},
            "master": {k: v.numpy() for k, v in self.master.items()},
        }

    def set_state_dict(self, state: dict[str, dict[str, Any]]) -> None:
        """Load a state from :meth:`state_dict`; names must match the layer's."""
        velocity = state.get("velocity", {})
        missing = sorted(set(self.velocity) - set(velocity))
        if missing:
            raise KeyError(f"optimizer state lacks momentum of {missing[:3]}")
        for name, value in velocity.items():
            self.velocity[name].set_value(np.asarray(value, dtype=np.float32))
        for name, value in state.get("master", {}).items():
            if name in self.master:
                self.master[name].set_value(np.asarray(value, dtype=np.float32))
