"""The training loop: data-parallel backbone, model-parallel Partial FC head.

One step, on every rank:

1. Read this rank's batch (the sampler gives each rank a disjoint share of a
   global batch, reshuffled each epoch from the seed).
2. Backbone forward. In ``static`` mode the backbone's forward and backward run
   as one compiled program (``paddle.jit.to_static``). The head, the gradient
   all-reduce and both optimizer updates run eagerly in both modes, because
   ``to_static`` fails on the head's ``all_gather`` under PIR (Paddle 3.3).
3. Head: all-gather embeddings and labels, sample class centers, margin
   softmax over the sharded classes, loss of the global batch.
4. Backward; backbone gradients averaged over ranks (one fused all-reduce).
5. Backbone SGD step, then the head's sparse momentum step on its sampled rows.

Dropout and any other Paddle randomness is reseeded from (seed, rank, step) at
each step, and the head samples from (seed, step), so a resumed run repeats
the losses of an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.config import TrainConfig, default_lr
from plsc_cli.distributed import runtime
from plsc_cli.engine import checkpoint as ckpt
from plsc_cli.engine.metrics import (
    ScalarWriter,
    StepMeter,
    format_step_line,
    peak_memory_gib,
)
from plsc_cli.engine.optimizer import MomentumSGD
from plsc_cli.engine.precision import Precision, scale_gradient
from plsc_cli.engine.schedule import learning_rate
from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)

VALIDATION_BATCH = 64


@dataclass
class Components:
    """Builders of the backbone, head and data; tests swap in small stand-ins."""

    build_backbone: Callable[..., Any]
    build_head: Callable[..., Any]
    build_data: Callable[[TrainConfig, int, int], Any]

    @classmethod
    def default(cls) -> Components:
        from plsc_cli.engine.data import build_train_data
        from plsc_cli.heads.partial_fc import PartialFC
        from plsc_cli.models import build_backbone

        return cls(build_backbone, PartialFC, build_train_data)


def too_few_classes(data: str, num_classes: int, data_classes: int) -> str:
    """Explain that ``num_classes`` is below the labels of ``data``.

    For a label.txt the first line whose label is out of range is named.
    """
    message = (
        f"--num-classes {num_classes} is too small: {data} has labels up to "
        f"{data_classes - 1}, so at least {data_classes} classes are needed"
    )
    path = Path(data)
    label_file = path / "label.txt" if path.is_dir() else path
    if label_file.suffix == ".txt" and label_file.is_file():
        from plsc_cli.data.label_file import parse_label_lines

        _, labels, line_numbers = parse_label_lines(label_file)
        for label, line_no in zip(labels, line_numbers, strict=True):
            if label >= num_classes:
                message += f" (first: label {label} at {label_file}:{line_no})"
                break
    return message + "; raise it or leave it unset to take the count from the data"


@dataclass
class TrainState:
    """Position of the run; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_accuracy: float = -1.0
    losses: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    """Summary of a finished run."""

    run_dir: Path
    steps: int
    losses: list[float]
    last_checkpoint: Path | None
    validation: dict[str, dict[str, float]]


def resolve_device(config: TrainConfig) -> str:
    """Return 'gpu' or 'cpu' for --device auto|cpu|gpu."""
    import paddle

    has_gpu = paddle.device.is_compiled_with_cuda() and (
        paddle.device.cuda.device_count() > 0
    )
    if config.device == "gpu" and not has_gpu:
        raise PlscError(
            "--device gpu: Paddle sees no CUDA GPU (CPU wheel or no driver); "
            "use --device cpu"
        )
    if config.device == "auto":
        return "gpu" if has_gpu and config.nproc is None else "cpu"
    return config.device


class Trainer:
    """Builds every part of a run from a TrainConfig and runs the loop."""

    def __init__(
        self,
        config: TrainConfig,
        components: Components | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        import paddle

        self.config = config
        self.components = components or Components.default()
        self.device = resolve_device(config)
        paddle.set_device(self.device)
        if rank is None or world_size is None:
            rank, world_size = runtime.init_process_group()
        self.rank, self.world_size = rank, world_size
        self.run_dir = Path(config.output_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fp16 = config.fp16 if config.fp16 is not None else self.device == "gpu"
        if fp16 and self.device != "gpu":
            raise PlscError("--fp16 needs a GPU; CPU has no float16 matmul kernels")
        self.precision = Precision(fp16)

        self.data = self.components.build_data(config, self.rank, self.world_size)
        self.num_classes = config.num_classes or self.data.num_classes
        if self.data.num_classes > self.num_classes:
            raise PlscError(
                too_few_classes(config.data, self.num_classes, self.data.num_classes)
            )
        self.steps_per_epoch = self.data.steps_per_epoch
        self.global_batch = config.batch_size * self.world_size
        self.base_lr = (
            config.lr if config.lr is not None else default_lr(self.global_batch)
        )
        total = config.epochs * self.steps_per_epoch
        self.total_steps = min(total, config.max_steps or total)

        self._build_model()
        self.state = TrainState()
        self.validation_sets: list[Any] = []
        if config.val_bins:
            from plsc_cli.engine.validation import load_sets

            self.validation_sets = load_sets(config.val_bins, log=self.rank == 0)

    def _build_model(self) -> None:
        import paddle

        config = self.config
        # The same seed on every rank gives every rank the same initial backbone.
        paddle.seed(config.seed)
        backbone = self.components.build_backbone(
            config.backbone, embedding_size=config.embedding_size
        )
        self.backbone = self.precision.decorate(backbone)
        self.optimizer = MomentumSGD(
            self.backbone, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.params = [p for p in self.backbone.parameters() if not p.stop_gradient]
        # Batch-norm running statistics: each rank updates its own copy.
        self.statistics = [p for p in self.backbone.parameters() if p.stop_gradient]
        self.statistics += list(self.backbone.buffers())
        if self.world_size > 1:
            import paddle.distributed as dist

            # Seeded initialisation already agrees; the broadcast makes sure.
            for tensor in self.backbone.state_dict().values():
                dist.broadcast(tensor, src=0)
        if config.mode == "static":
            self.forward = paddle.jit.to_static(self.backbone, full_graph=True)
        else:
            self.forward = self.backbone
        self.head = self.components.build_head(
            num_classes=self.num_classes,
            embedding_size=config.embedding_size,
            margins=config.margins,
            scale=config.scale,
            sample_ratio=config.sample_ratio,
            storage_dtype=config.head_dtype,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            seed=config.seed,
        )

    # ----------------------------------------------------------------- one step

    def lr_at(self, step: int) -> float:
        config = self.config
        return learning_rate(
            step,
            base_lr=self.base_lr,
            steps_per_epoch=self.steps_per_epoch,
            decay_epochs=config.lr_decay_epochs,
            decay_factor=config.lr_decay_factor,
            warmup_epochs=config.warmup_epochs,
        )

    def train_step(self, images: Any, labels: Any, lr: float) -> float:
        """Run one optimisation step; returns the loss of the global batch."""
        import paddle

        # Randomness inside the backbone depends on (seed, rank, step) only.
        step_index = self.state.step
        paddle.seed(step_seed(self.config.seed, self.rank, step_index))
        self.optimizer.set_lr(lr)

        with self.precision.autocast():
            embeddings = self.forward(images)
        embeddings = scale_gradient(
            embeddings.astype("float32"), self.precision.grad_scale
        )
        loss = self.head(embeddings, labels)
        loss.backward()

        # Sync point: average backbone gradients over ranks; skip on inf/nan.
        finite = self._reduce_gradients()
        if self.precision.scaler is not None:
            self.precision.scaler.update(finite, step_index)
        elif not finite:
            logger.warning("step %d skipped: inf or nan in the gradients", step_index)
        # A skipped step leaves the head alone: its next forward pass replaces
        # the pending gradients.
        if finite:
            self.optimizer.step()
            self.head.step(lr)
        self.optimizer.clear_grad()
        return float(loss)

    def _average_statistics(self) -> None:
        """Average the batch-norm running statistics over ranks.

        Runs before each checkpoint and validation, so the saved backbone and
        the eval-mode outputs are the same on every rank.
        """
        if self.world_size == 1 or not self.statistics:
            return
        import paddle
        import paddle.distributed as dist

        flat = paddle.concat([t.astype("float32").flatten() for t in self.statistics])
        dist.all_reduce(flat)
        flat = flat * (1.0 / self.world_size)
        offset = 0
        for tensor in self.statistics:
            size = int(np.prod(tensor.shape))
            part = flat[offset : offset + size].reshape(tensor.shape)
            tensor.set_value(part.astype(tensor.dtype))
            offset += size

    def _reduce_gradients(self) -> bool:
        """All-reduce the backbone gradients as one buffer and unscale them.

        Returns whether every gradient is finite. Every rank gets the same
        result, because it is read after the all-reduce.
        """
        import paddle

        grads = [p.grad for p in self.params]
        flat = paddle.concat([g.astype("float32").flatten() for g in grads])
        if self.world_size > 1:
            import paddle.distributed as dist

            dist.all_reduce(flat)
        flat = flat * (1.0 / (self.world_size * self.precision.grad_scale))
        finite = bool(paddle.isfinite(flat).all())
        if not finite:
            return False
        offset = 0
        for grad in grads:
            size = int(np.prod(grad.shape))
            part = flat[offset : offset + size].reshape(grad.shape)
            grad.set_value(part.astype(grad.dtype))
            offset += size
        return True

    # ----------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        """Train until the last epoch or --max-steps; returns losses and paths."""
        import paddle

        config = self.config
        self._log_start()
        writer = ScalarWriter(self.run_dir, self.state.step) if self.rank == 0 else None
        meter = StepMeter(self.total_steps, self.state.step)
        last_saved: Path | None = None
        results: dict[str, dict[str, float]] = {}
        state = self.state

        try:
            while state.step < self.total_steps:
                epoch = state.epoch
                batches = self.data.epoch_batches(epoch, state.batch_in_epoch)
                step_start = time.perf_counter()
                for images_np, labels_np in batches:
                    images = paddle.to_tensor(images_np)
                    labels = paddle.to_tensor(labels_np)
                    data_wait = time.perf_counter() - step_start
                    meter.add(data_wait)
                    lr = self.lr_at(state.step)

                    loss = self.train_step(images, labels, lr)

                    state.step += 1
                    state.batch_in_epoch += 1
                    state.losses.append(loss)
                    step_time = time.perf_counter() - step_start
                    step_start = time.perf_counter()
                    if writer is not None:
                        writer.add_step(
                            {
                                "step": state.step,
                                "epoch": epoch,
                                "loss": loss,
                                "lr": lr,
                                "samples_per_s": self.global_batch / step_time,
                                "data_wait": data_wait / step_time,
                            }
                        )
                    if state.step % config.log_every == 0 or state.step == 1:
                        self._log_step(meter, loss, lr)

                    # Epoch end: the next step starts the next epoch's order.
                    end_of_epoch = state.batch_in_epoch >= self.steps_per_epoch
                    if end_of_epoch:
                        state.epoch += 1
                        state.batch_in_epoch = 0
                    done = state.step >= self.total_steps
                    if end_of_epoch or done or _every(state.step, config.save_every):
                        last_saved = self.save()
                    if self._validation_due(end_of_epoch or done):
                        self._validate_and_keep_best(writer, results, last_saved)
                    if end_of_epoch or done:
                        break
                    step_start = time.perf_counter()
                else:
                    # The loader ran out before steps_per_epoch batches.
                    logger.warning(
                        "epoch %d ended after %d of %d batches",
                        epoch + 1,
                        state.batch_in_epoch,
                        self.steps_per_epoch,
                    )
                    state.epoch += 1
                    state.batch_in_epoch = 0
                if hasattr(batches, "close"):
                    batches.close()
        finally:
            if writer is not None:
                writer.close()
            close = getattr(self.data, "close", None)
            if close is not None:
                close()
        if self.rank == 0:
            logger.info("finished %d steps; last checkpoint %s", state.step, last_saved)
        return TrainResult(self.run_dir, state.step, state.losses, last_saved, results)

    def _validation_due(self, end_of_epoch: bool) -> bool:
        if not self.config.val_bins:
            return False
        if self.config.val_every == 0:
            return end_of_epoch
        return _every(self.state.step, self.config.val_every)

    def _validate_and_keep_best(
        self,
        writer: ScalarWriter | None,
        results: dict[str, dict[str, float]],
        saved: Path | None,
    ) -> None:
        if not self.config.val_bins:
            return
        from plsc_cli.engine.validation import validate

        self._average_statistics()
        results.clear()
        results.update(
            validate(
                self.forward,
                self.backbone,
                self.validation_sets,
                VALIDATION_BATCH,
                self.precision,
                self.rank,
                self.world_size,
            )
        )
        for name, metrics in results.items():
            if writer is not None:
                writer.add_validation(self.state.step, name, metrics)
            if self.rank == 0:
                logger.info(
                    "validation %s at step %d: accuracy %.4f +- %.4f "
                    "(threshold %.2f, %d pairs)",
                    name,
                    self.state.step,
                    metrics["accuracy"],
                    metrics["accuracy_std"],
                    metrics["threshold"],
                    metrics["num_pairs"],
                )
        # Every rank computed the same accuracies, so all decide alike.
        accuracy = float(np.mean([m["accuracy"] for m in results.values()]))
        if accuracy <= self.state.best_accuracy:
            return
        self.state.best_accuracy = accuracy
        if saved is None or ckpt_step(saved) != self.state.step:
            saved = self.save()
        if self.rank == 0:
            best = ckpt.mark_best(self.run_dir, saved, accuracy)
            logger.info("best mean accuracy %.4f so far: copied to %s", accuracy, best)
        runtime.barrier()

    # ----------------------------------------------------------- checkpoints

    def save(self) -> Path:
        self._average_statistics()
        state = self.state
        meta = {
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "global_batch": self.global_batch,
            "num_classes": self.num_classes,
            "class_ranges": self._class_ranges(),
            "best_accuracy": state.best_accuracy,
            "config": self.config.to_dict(),
        }
        rng = {
            "seed": self.config.seed,
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "loss_scale": (
                self.precision.scaler.state() if self.precision.scaler else None
            ),
        }
        is_root = self.rank == 0
        return ckpt.save_checkpoint(
            self.run_dir,
            step=state.step,
            rank=self.rank,
            world_size=self.world_size,
            meta=meta,
            backbone=self.backbone.state_dict() if is_root else None,
            optimizer=self.optimizer.state_dict() if is_root else None,
            head=self.head.shard_state(),
            rng=rng,
            keep_last=self.config.keep_last,
            barrier=runtime.barrier,
        )

    def _class_ranges(self) -> list[list[int]]:
        from plsc_cli.distributed.shard import ClassShard

        ranges = []
        for rank in range(self.world_size):
            shard = ClassShard(self.num_classes, rank, self.world_size)
            ranges.append([shard.start, shard.end])
        return ranges

    def restore(self, path: Path) -> None:
        """Load a checkpoint; re-shards the head when the rank count differs."""
        import paddle

        loaded = ckpt.load_checkpoint(path, self.rank, self.world_size)
        meta = loaded.meta
        saved_config = meta["config"]
        for key in ("backbone", "embedding_size"):
            if saved_config[key] != getattr(self.config, key):
                raise PlscError(
                    f"--resume {path}: checkpoint has {key} {saved_config[key]!r} "
                    f"but this run asks for {getattr(self.config, key)!r}; use the "
                    f"same --{key.replace('_', '-')} or start a new run folder"
                )
        if int(meta["num_classes"]) != self.num_classes:
            raise PlscError(
                f"--resume {path}: checkpoint has {meta['num_classes']} classes, "
                f"this run {self.num_classes}; use the same data and --num-classes"
            )
        self.backbone.set_state_dict(
            {k: paddle.to_tensor(v) for k, v in loaded.backbone.items()}
        )
        self.optimizer.set_state_dict(loaded.optimizer)
        self.head.load_shard_state(loaded.head)

        rng = loaded.rng
        state = self.state
        state.step = int(meta["step"])
        state.epoch = int(rng["epoch"])
        state.batch_in_epoch = int(rng["batch_in_epoch"])
        state.best_accuracy = float(meta.get("best_accuracy", -1.0))
        if int(meta["global_batch"]) != self.global_batch:
            # The same samples per epoch are consumed in bigger or smaller steps.
            samples = state.batch_in_epoch * int(meta["global_batch"])
            state.batch_in_epoch = samples // self.global_batch
            logger.warning(
                "global batch changed from %d to %d: the data order after resuming "
                "differs from an uninterrupted run",
                meta["global_batch"],
                self.global_batch,
            )
        if rng.get("loss_scale") and self.precision.scaler is not None:
            self.precision.scaler.load_state(rng["loss_scale"])
        if self.rank == 0:
            logger.info(
                "resumed from %s: step %d, epoch %d (saved by %d rank(s))",
                path,
                state.step,
                state.epoch + 1,
                meta["world_size"],
            )

    def next_batch_loss(self) -> float:
        """Return the loss of the next global batch with the backbone in eval mode.

        Nothing is updated. Eval mode uses the running batch-norm statistics, so
        the value does not depend on how the global batch is split over ranks.
        This makes the loss comparable after re-sharding to another rank count.
        """
        import paddle

        batches = self.data.epoch_batches(self.state.epoch, self.state.batch_in_epoch)
        images, labels = next(iter(batches))
        if hasattr(batches, "close"):
            batches.close()
        self.backbone.eval()
        try:
            with paddle.no_grad(), self.precision.autocast():
                embeddings = self.forward(paddle.to_tensor(images))
            loss = self.head(embeddings.astype("float32"), paddle.to_tensor(labels))
        finally:
            self.backbone.train()
        return float(loss)

    # ----------------------------------------------------------------- logging

    def _log_start(self) -> None:
        if self.rank != 0:
            return
        config = self.config
        logger.info(
            "training %s (%s mode) on %d %s rank(s): %d classes, global batch %d "
            "(%d per device), %d steps/epoch, %d steps, lr %g",
            config.backbone,
            config.mode,
            self.world_size,
            self.device,
            self.num_classes,
            self.global_batch,
            config.batch_size,
            self.steps_per_epoch,
            self.total_steps,
            self.base_lr,
        )
        logger.info(self.precision.describe(self.device, config.head_dtype))
        if config.mode == "static":
            logger.info(
                "static mode: backbone forward and backward compiled with "
                "paddle.jit.to_static; head, all-reduce and updates run eagerly"
            )

    def _log_step(self, meter: StepMeter, loss: float, lr: float) -> None:
        if self.rank != 0:
            return
        window = meter.window(self.state.step)
        logger.info(
            format_step_line(
                step=self.state.step,
                total_steps=self.total_steps,
                epoch=self.state.epoch,
                epochs=self.config.epochs,
                loss=loss,
                lr=lr,
                global_batch=self.global_batch,
                world_size=self.world_size,
                window=window,
                memory_gib=peak_memory_gib(self.device),
            )
        )
        if not math.isfinite(loss):
            logger.warning("loss is %s at step %d", loss, self.state.step)


def step_seed(seed: int, rank: int, step: int) -> int:
    """Return the Paddle seed of one rank's step, derived from the run seed."""
    mixed = np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]
    return int(mixed)


def _every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


def ckpt_step(path: Path) -> int:
    return int(path.name.split("-")[-1])


def run_training(
    config: TrainConfig, components: Components | None = None
) -> TrainResult:
    """Build a Trainer, resume if asked, train, and return the result."""
    trainer = Trainer(config, components)
    resume = ckpt.resolve_resume(config.resume, config.output_dir)
    if resume is not None:
        trainer.restore(resume)
    elif config.resume == "auto" and trainer.rank == 0:
        logger.info(
            "--resume auto: no checkpoint in %s, starting fresh", config.output_dir
        )
    return trainer.fit()
