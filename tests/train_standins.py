"""Small stand-ins for the head and the data source of the training loop.

They follow the interfaces the trainer uses (PartialFC's forward, ``step``,
``shard_state`` and ``load_shard_state``; the loader's ``epoch_batches``) on one
rank, so the loop, checkpoints and resume can be tested in one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class StandinHead:
    """Full softmax over cosine logits with a manual momentum SGD update."""

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        seed: int = 0,
        momentum: float = 0.9,
        scale: float = 16.0,
        **_: Any,
    ) -> None:
        import paddle

        rng = np.random.default_rng(seed)
        self.weight = paddle.to_tensor(
            rng.normal(0, 0.01, (embedding_size, num_classes)).astype("float32"),
            stop_gradient=False,
        )
        self.velocity = np.zeros((embedding_size, num_classes), dtype=np.float32)
        self.momentum = momentum
        self.scale = scale
        self.num_classes = num_classes
        self.steps = 0

    def __call__(self, embeddings: Any, labels: Any) -> Any:
        import paddle
        import paddle.nn.functional as F

        emb = F.normalize(embeddings, axis=1)
        w = F.normalize(self.weight, axis=0)
        logits = self.scale * paddle.matmul(emb, w)
        return F.cross_entropy(logits, labels.reshape([-1, 1]))

    def step(self, lr: float) -> None:
        grad = self.weight.grad.numpy()
        self.velocity = self.momentum * self.velocity + grad
        self.weight.set_value(self.weight.numpy() - lr * self.velocity)
        self.weight.clear_gradient()
        self.steps += 1

    def clear_grad(self) -> None:
        self.weight.clear_gradient()

    def shard_state(self) -> dict[str, Any]:
        return {
            "weight": self.weight.numpy(),
            "momentum": self.velocity.copy(),
            "class_start": 0,
            "class_end": self.num_classes,
            "num_classes": self.num_classes,
            "step": self.steps,
            "seed": 0,
        }

    def load_shard_state(self, state: dict[str, Any]) -> None:
        self.weight.set_value(state["weight"])
        self.velocity = np.array(state["momentum"])
        self.steps = int(state["step"])


class StandinData:
    """Fixed random images of learnable classes, shuffled per epoch by seed."""

    def __init__(
        self,
        num_classes: int = 4,
        per_class: int = 6,
        batch_size: int = 4,
        seed: int = 0,
        image_size: int = 112,
    ) -> None:
        rng = np.random.default_rng(1234)
        centers = rng.normal(0, 1, (num_classes, 3, image_size, image_size))
        self.labels = np.repeat(np.arange(num_classes), per_class).astype("int64")
        noise = rng.normal(0, 0.3, (len(self.labels), 3, image_size, image_size))
        self.images = (centers[self.labels] + noise).astype("float32")
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = len(self.labels) // batch_size

    def epoch_batches(self, epoch: int, start_batch: int):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
        for b in range(start_batch, self.steps_per_epoch):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            flip = np.random.default_rng([self.seed, epoch, b]).random(len(idx)) < 0.5
            images = self.images[idx].copy()
            images[flip] = images[flip][..., ::-1]
            yield images, self.labels[idx]
