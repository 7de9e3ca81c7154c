"""Partial FC: a margin softmax head whose class centers are sharded across ranks.

Rank ``r`` stores the centers and momentum of its class range (see
``ClassShard``). A step is::

    loss = head(local_embeddings, local_labels)  # all-gathers features and labels
    loss.backward()                              # gradient reaches local_embeddings
    head.step(lr)                                # sparse momentum SGD on sampled rows

On CPU the head computes in float32 with NumPy inside a PyLayer, chunk by chunk over
the sampled centers. The forward pass runs an online softmax (running row maximum
and sum of exponentials, rescaled when the maximum grows) and accumulates the
feature gradient in the same pass, so no [num_sample, D] float32 copy exists at any
time. It keeps the [global_batch, num_sample] cosines for ``step()``, which forms
the center gradients from them chunk by chunk and updates each chunk right away.

On a CUDA device the head uses Paddle's fused ``class_center_sample`` and
``margin_cross_entropy`` with the model-parallel group.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import paddle
from paddle.autograd import PyLayer

from plsc_cli.distributed.collectives import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_max,
    all_reduce_sum,
    group_rank_and_size,
)
from plsc_cli.distributed.shard import ClassShard
from plsc_cli.errors import PlscError, PlscUsageError
from plsc_cli.heads import center_storage
from plsc_cli.heads.margin import resolve_margins, target_logit_and_slope
from plsc_cli.heads.sampling import (
    SampledClasses,
    num_samples_for_ratio,
    sample_classes,
)

logger = logging.getLogger(__name__)
_T = TypeVar("_T")
# threadpoolctl's controller once created, or False when it is not installed.
_BLAS_CONTROLLER: Any = None

DEFAULT_CHUNK_ROWS = 16384
# Floor for L2 norms, so that an all-zero feature or center gives zero, not NaN.
NORM_EPS = 1e-12


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Limit NumPy's BLAS to one thread while the head runs its own chunk threads.

    A multi-threaded BLAS called from several threads oversubscribes the cores.
    On a busy 2-core machine a 300k-class step took 2.0 s that way and 0.7 s with
    one BLAS thread (measured with threadpoolctl 3.8 and NumPy's OpenBLAS 0.3.31).
    Without threadpoolctl installed this does nothing.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_CONTROLLER = False
            logger.debug("threadpoolctl is not installed; BLAS threads stay as set")
        else:
            _BLAS_CONTROLLER = ThreadpoolController()
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


@dataclass
class _PendingStep:
    """State of the last CPU forward pass that ``step()`` uses."""

    sampled: SampledClasses
    chunk_bounds: list[tuple[int, int]]
    normalized_features: np.ndarray  # [B, D] float32
    cosine_chunks: list[np.ndarray]  # [B, chunk] float32 each, raw cosines
    inverse_norms: np.ndarray  # [S] float32, 1 / |w_j|
    row_max: np.ndarray  # [B] float64, global maximum logit per row
    row_sum: np.ndarray  # [B] float64, global sum of exp(logit - row_max)
    target_rows: np.ndarray  # rows whose label is in this shard
    target_cols: np.ndarray  # their label's position in the sampled list
    target_logits: np.ndarray  # margin logits at those positions
    target_slopes: np.ndarray  # d logit / d cosine at those positions
    # Sampled rows to gather, or None when every row of the shard is used in order.
    gather_indices: np.ndarray | None
    grad_scale: float | None = None  # upstream gradient of the loss; set by backward


@dataclass
class _ForwardPartial:
    """One worker's online-softmax state over its chunks."""

    row_max: np.ndarray
    row_sum: np.ndarray
    # sum_j exp(logit_ij - row_max_i) * dlogit_ij/dcos_ij * w_j / |w_j|
    grad_accumulator: np.ndarray


class _MarginSoftmaxCPU(PyLayer):
    """Loss of the gathered features on this shard, with its analytic gradient."""

    @staticmethod
    def forward(
        ctx: Any, features: paddle.Tensor, labels: np.ndarray, head: PartialFC
    ) -> paddle.Tensor:
        with _single_threaded_blas():
            loss, feature_grad = head._forward_cpu(features.numpy(), labels)
        ctx.head = head
        ctx.feature_grad = feature_grad
        return paddle.to_tensor(np.asarray(loss, dtype=np.float32))

    @staticmethod
    def backward(ctx: Any, grad_loss: paddle.Tensor) -> paddle.Tensor:
        scale = float(grad_loss.numpy())
        ctx.head._set_grad_scale(scale)
        return paddle.to_tensor(ctx.feature_grad * np.float32(scale))


class PartialFC(paddle.nn.Layer):
    """Sharded Partial FC head with a combined margin softmax and sparse momentum SGD.

    Args:
        num_classes: number of classes over all ranks.
        embedding_size: feature dimension D.
        margins: ``(m1, m2, m3)`` of ``s * (cos(m1 * theta + m2) - m3)`` or a preset
            name from ``MARGIN_PRESETS`` ("arcface", "cosface", "sphereface").
        scale: the logit scale s.
        sample_ratio: share of each rank's classes used per step, in (0, 1]; a rank
            samples ``round(sample_ratio * num_local)`` classes, or all positives
            when there are more.
        storage_dtype: "float32", "float16" or "bfloat16" for centers and momentum.
        momentum: momentum factor mu of ``v = mu * v + g + wd * w; w -= lr * v``.
        weight_decay: L2 factor wd, applied to sampled rows only.
        seed: seed of the initial centers and of the negative sampling.
        group: model-parallel process group; None means all ranks.
        chunk_rows: sampled centers processed at once by one CPU thread; bounds the
            transient memory to a few ``chunk_rows x D`` float32 buffers per thread.
        num_threads: CPU threads that process chunks in parallel; None means the
            CPUs this process may run on.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margins: str | Sequence[float] = (1.0, 0.5, 0.0),
        scale: float = 64.0,
        sample_ratio: float = 1.0,
        storage_dtype: str = "float32",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        seed: int = 0,
        group: Any = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        try:
            self.margins = resolve_margins(margins)
            center_storage.check_storage_dtype(storage_dtype)
            rank, world_size = group_rank_and_size(group)
            self.shard = ClassShard(num_classes, rank, world_size)
            self.num_sample = num_samples_for_ratio(sample_ratio, self.shard.num_local)
        except ValueError as error:
            raise PlscUsageError(f"invalid Partial FC setting: {error}") from error
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.scale = float(scale)
        self.sample_ratio = float(sample_ratio)
        self.storage_dtype = storage_dtype
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.seed = int(seed)
        self.group = group
        self.chunk_rows = max(1, int(chunk_rows))
        self.num_threads = max(1, num_threads or len(os.sched_getaffinity(0)))
        self.global_step = 0
        self.use_fused_gpu_ops = (
            paddle.is_compiled_with_cuda() and "gpu" in paddle.get_device()
        )
        self._pending: _PendingStep | None = None
        self._gpu_pending: tuple[paddle.Tensor, paddle.Tensor] | None = None
        self._executor: ThreadPoolExecutor | None = None

        self._storage = center_storage.ShardStorage(
            self.shard.num_local,
            embedding_size,
            storage_dtype,
            self.shard.start,
            self.seed,
            max_rows=min(self.chunk_rows, self.num_sample),
            num_threads=self.num_threads,
        )
        if self.use_fused_gpu_ops:
            self._move_storage_to_gpu()
        logger.debug(
            "Partial FC shard %d/%d: classes [%d, %d), %d sampled per step, %s",
            rank,
            world_size,
            self.shard.start,
            self.shard.end,
            self.num_sample,
            storage_dtype,
        )

    # ------------------------------------------------------------------ forward

    def forward(
        self, local_embeddings: paddle.Tensor, local_labels: paddle.Tensor
    ) -> paddle.Tensor:
        """Return the mean margin softmax loss over the global batch.

        ``local_embeddings`` is this rank's [n, D] features, ``local_labels`` its
        [n] global class ids. Both are all-gathered over the group first.
        """
        if local_embeddings.ndim != 2 or local_embeddings.shape[1] != (
            self.embedding_size
        ):
            raise PlscError(
                f"Partial FC expects embeddings of shape [batch, "
                f"{self.embedding_size}], got {list(local_embeddings.shape)}; check "
                "the backbone's embedding size"
            )
        features = all_gather_with_grad(local_embeddings.astype("float32"), self.group)
        labels = all_gather_no_grad(
            local_labels.reshape([-1]).astype("int64"), self.group
        )
        if self.use_fused_gpu_ops:
            return self._forward_gpu(features, labels)
        labels_array = labels.numpy()
        bad = (labels_array < 0) | (labels_array >= self.num_classes)
        if bad.any():
            raise PlscError(
                f"label {int(labels_array[bad][0])} is outside [0, "
                f"{self.num_classes}); check num_classes against the dataset"
            )
        return _MarginSoftmaxCPU.apply(features, labels_array, self)

    def _forward_cpu(
        self, features: np.ndarray, labels: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """Return the loss and its gradient for ``features`` from this rank's shard."""
        batch_size = features.shape[0]
        feature_norms = np.sqrt(np.einsum("ij,ij->i", features, features))
        feature_norms = np.maximum(feature_norms, NORM_EPS)
        normalized = features / feature_norms[:, None]
        sampled = sample_classes(
            labels, self.shard, self.num_sample, self.seed, self.global_step
        )
        target_rows = np.nonzero(sampled.remapped_labels >= 0)[0]
        num_targets = target_rows.size
        chunk_bounds = self._chunk_bounds(sampled.indices.size)
        pending = _PendingStep(
            sampled=sampled,
            chunk_bounds=chunk_bounds,
            normalized_features=normalized,
            cosine_chunks=[np.empty(0, np.float32)] * len(chunk_bounds),
            inverse_norms=np.empty(sampled.indices.size, np.float32),
            row_max=np.empty(0),
            row_sum=np.empty(0),
            target_rows=target_rows,
            target_cols=sampled.remapped_labels[target_rows],
            target_logits=np.zeros(num_targets),
            target_slopes=np.zeros(num_targets),
            gather_indices=(
                None
                if sampled.indices.size == self.shard.num_local
                else sampled.indices
            ),
        )
        # Rows of the one-hot part of the feature gradient: slope * w_y / |w_y|.
        target_term = np.zeros_like(normalized)
        partials = self._map_chunks(
            lambda worker, chunks: self._forward_chunks(
                pending, chunks, target_term, worker
            ),
            len(chunk_bounds),
        )
        row_max = np.max([p.row_max for p in partials], axis=0)
        row_sum = np.zeros(batch_size)
        grad_accumulator = np.zeros_like(normalized)
        for partial in partials:
            factor = np.exp(partial.row_max - row_max)
            row_sum += partial.row_sum * factor
            grad_accumulator += partial.grad_accumulator * factor[:, None]

        # Combine the ranks' partial softmax sums at the global row maximum.
        global_max = all_reduce_max(row_max, self.group)
        local_factor = np.exp(row_max - global_max)
        local_target = np.zeros(batch_size)
        local_target[target_rows] = pending.target_logits
        reduced = all_reduce_sum(
            np.concatenate([row_sum * local_factor, local_target]), self.group
        )
        global_sum, global_target = reduced[:batch_size], reduced[batch_size:]
        loss = float(np.mean(np.log(global_sum) + global_max - global_target))

        # d loss / d normalized feature from this shard: (softmax - one-hot) weighted
        # by dlogit/dcos, times the normalized centers, averaged over the batch.
        grad_normalized = grad_accumulator * (local_factor / global_sum)[:, None]
        grad_normalized -= target_term
        grad_normalized /= batch_size
        radial = np.einsum("ij,ij->i", grad_normalized, normalized)
        feature_grad = (grad_normalized - normalized * radial[:, None]) / (
            feature_norms[:, None]
        )
        pending.row_max, pending.row_sum = global_max, global_sum
        self._pending = pending
        return loss, feature_grad.astype(np.float32)

    def _forward_chunks(
        self,
        pending: _PendingStep,
        chunks: list[int],
        target_term: np.ndarray,
        worker: int,
    ) -> _ForwardPartial:
        """Run the online softmax over ``chunks``; fill their slots in ``pending``."""
        normalized = pending.normalized_features
        batch_size = normalized.shape[0]
        scale = np.float32(self.scale)
        row_max = np.full(batch_size, -np.inf)
        row_sum = np.zeros(batch_size)
        grad_accumulator = np.zeros_like(normalized)
        indices = pending.gather_indices
        for chunk in chunks:
            start, end = pending.chunk_bounds[chunk]
            centers = self._storage.read_rows("weight", indices, start, end, worker)
            squared = np.einsum("ij,ij->i", centers, centers)
            inverse_norms = 1.0 / np.maximum(np.sqrt(squared), NORM_EPS)
            pending.inverse_norms[start:end] = inverse_norms
            cosine = normalized @ centers.T
            cosine *= inverse_norms
            pending.cosine_chunks[chunk] = cosine

            in_chunk = (pending.target_cols >= start) & (pending.target_cols < end)
            rows = pending.target_rows[in_chunk]
            cols = pending.target_cols[in_chunk] - start
            logit, slope = target_logit_and_slope(
                cosine[rows, cols], self.margins, self.scale
            )
            pending.target_logits[in_chunk] = logit
            pending.target_slopes[in_chunk] = slope
            target_term[rows] = (
                slope[:, None] * centers[cols] * inverse_norms[cols, None]
            )

            exp_logits = cosine * scale
            exp_logits[rows, cols] = logit
            new_max = np.maximum(row_max, exp_logits.max(axis=1))
            rescale = np.exp(row_max - new_max)
            exp_logits -= new_max[:, None].astype(np.float32)
            np.exp(exp_logits, out=exp_logits)
            row_sum = row_sum * rescale + exp_logits.sum(axis=1, dtype=np.float64)
            row_max = new_max

            # Weight each exponential by dlogit/dcos and 1/|w_j| for the matmul.
            exp_logits *= scale
            exp_logits[rows, cols] *= (slope / self.scale).astype(np.float32)
            exp_logits *= inverse_norms
            grad_accumulator *= rescale[:, None].astype(np.float32)
            grad_accumulator += exp_logits @ centers
        return _ForwardPartial(row_max, row_sum, grad_accumulator)

    def _set_grad_scale(self, scale: float) -> None:
        if self._pending is not None:
            self._pending.grad_scale = scale

    # --------------------------------------------------------------------- step

    def _center_gradient_parts(
        self, pending: _PendingStep, chunk: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(q, c)`` of one chunk; center j's gradient is ``q_j - c_j * w_j``.

        With ``g_ij = dloss/dcos_ij``: ``q_j = sum_i g_ij * x_i / |w_j|`` (x_i
        normalized) and ``c_j = sum_i g_ij * cos_ij / |w_j|^2``.
        """
        if pending.grad_scale is None:
            raise RuntimeError("call loss.backward() before head.step()")
        batch_size = pending.normalized_features.shape[0]
        scale = np.float32(self.scale)
        start, end = pending.chunk_bounds[chunk]
        cosine = pending.cosine_chunks[chunk]
        in_chunk = (pending.target_cols >= start) & (pending.target_cols < end)
        rows = pending.target_rows[in_chunk]
        cols = pending.target_cols[in_chunk] - start

        # The same float32 operations as the forward pass, so the same logits.
        grad = cosine * scale
        grad[rows, cols] = pending.target_logits[in_chunk]
        grad -= pending.row_max[:, None].astype(np.float32)
        np.exp(grad, out=grad)
        grad *= (1.0 / pending.row_sum)[:, None].astype(np.float32)
        grad[rows, cols] -= 1.0
        grad *= np.float32(pending.grad_scale / batch_size) * scale
        slopes = pending.target_slopes[in_chunk]
        grad[rows, cols] *= (slopes / self.scale).astype(np.float32)

        inverse_norms = pending.inverse_norms[start:end]
        c = np.einsum("ij,ij->j", grad, cosine)
        c *= inverse_norms * inverse_norms
        grad *= inverse_norms
        return grad.T @ pending.normalized_features, c

    def sampled_center_gradients(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the sampled global class ids and their [S, D] float32 gradients.

        For tests and debugging: this builds the full [S, D] array that ``step()``
        avoids. Call it after ``loss.backward()`` and before ``step()``.
        """
        pending = self._require_pending()
        indices = pending.sampled.indices
        grads = np.empty((indices.size, self.embedding_size), np.float32)
        for chunk, (start, end) in enumerate(pending.chunk_bounds):
            q, c = self._center_gradient_parts(pending, chunk)
            centers = self._storage.read_rows(
                "weight", pending.gather_indices, start, end, worker=0
            )
            grads[start:end] = q - centers * c[:, None]
        return indices + self.shard.start, grads

    def sampled_classes(self) -> np.ndarray:
        """Return the global class ids sampled in the last forward pass."""
        if self.use_fused_gpu_ops:
            if self._gpu_pending is None:
                raise RuntimeError("call the head's forward before sampled_classes()")
            return self._gpu_pending[0].numpy() + self.shard.start
        return self._require_pending().sampled.indices + self.shard.start

    def step(self, lr: float) -> None:
        """Apply momentum SGD with weight decay to the sampled centers only.

        ``v = mu * v + g + wd * w`` and ``w = w - lr * v`` on the sampled rows,
        computed in float32 and stored in the storage dtype; other rows keep their
        bits. Call once after each ``loss.backward()``.
        """
        if self.use_fused_gpu_ops:
            self._step_gpu(lr)
            return
        pending = self._require_pending()
        if pending.grad_scale is None:
            raise RuntimeError("call loss.backward() before head.step()")
        with _single_threaded_blas():
            self._map_chunks(
                lambda worker, chunks: self._update_chunks(pending, chunks, lr, worker),
                len(pending.chunk_bounds),
            )
        self._pending = None
        self.global_step += 1

    def _update_chunks(
        self, pending: _PendingStep, chunks: list[int], lr: float, worker: int
    ) -> None:
        indices = pending.gather_indices
        storage = self._storage
        for chunk in chunks:
            start, end = pending.chunk_bounds[chunk]
            q, c = self._center_gradient_parts(pending, chunk)
            centers = storage.read_rows("weight", indices, start, end, worker)
            velocity = storage.read_rows("momentum", indices, start, end, worker)
            scratch = storage.scratch("update", end - start, np.float32, worker)
            velocity *= np.float32(self.momentum)
            velocity += q
            # g + wd * w = q + (wd - c) * w
            coefficient = (self.weight_decay - c).astype(np.float32)
            np.multiply(centers, coefficient[:, None], out=scratch)
            velocity += scratch
            np.multiply(velocity, np.float32(lr), out=scratch)
            centers -= scratch
            storage.write_rows("weight", indices, start, end, centers, worker)
            storage.write_rows("momentum", indices, start, end, velocity, worker)

    def _require_pending(self) -> _PendingStep:
        if self._pending is None:
            raise RuntimeError(
                "no forward pass to apply; call loss = head(...) and "
                "loss.backward() before head.step()"
            )
        return self._pending

    # ------------------------------------------------------------ chunk threads

    def _chunk_bounds(self, num_rows: int) -> list[tuple[int, int]]:
        # At least one chunk per thread, so small sampled sets use every thread too.
        size = min(self.chunk_rows, max(1, math.ceil(num_rows / self.num_threads)))
        return [(s, min(s + size, num_rows)) for s in range(0, num_rows, size)]

    def _map_chunks(
        self, work: Callable[[int, list[int]], _T], num_chunks: int
    ) -> list[_T]:
        """Run ``work(worker, chunks)`` on each thread's share of the chunks.

        Chunks are dealt round-robin and results come back in worker order, so
        the floating-point result does not depend on thread timing. NumPy releases
        the GIL in matmul, take and ufuncs, so the threads run in parallel.
        """
        num_workers = min(self.num_threads, num_chunks)
        shares = [list(range(w, num_chunks, num_workers)) for w in range(num_workers)]
        if num_workers <= 1:
            return [work(0, shares[0] if shares else [])]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.num_threads, thread_name_prefix="partial-fc"
            )
        return list(self._executor.map(work, range(num_workers), shares))

    # -------------------------------------------------------------- shard state

    def shard_state(self) -> dict[str, Any]:
        """Return this rank's centers, momentum and bookkeeping for a checkpoint.

        ``weight`` and ``momentum`` are the live storage arrays on CPU (no copy);
        bfloat16 rows are uint16 bit patterns. ``storage_dtype`` names the format.
        """
        if self.use_fused_gpu_ops:
            weight = self._weight_gpu.numpy()
            momentum = self._momentum_gpu.numpy()
        else:
            weight = self._storage.arrays["weight"]
            momentum = self._storage.arrays["momentum"]
        return {
            "weight": weight,
            "momentum": momentum,
            "class_start": self.shard.start,
            "class_end": self.shard.end,
            "num_classes": self.num_classes,
            "step": self.global_step,
            "seed": self.seed,
            "storage_dtype": self.storage_dtype,
        }

    def load_shard_state(self, state: dict[str, Any]) -> None:
        """Load centers and momentum saved by ``shard_state`` for the same classes.

        Float arrays of another dtype are converted to this head's storage dtype.
        Use ``reshard_states`` first when the world size changed.
        """
        expected = (self.shard.start, self.shard.end, self.num_classes)
        found = (
            int(state["class_start"]),
            int(state["class_end"]),
            int(state["num_classes"]),
        )
        if found != expected:
            raise PlscError(
                f"head shard state covers classes [{found[0]}, {found[1]}) of "
                f"{found[2]}, but this rank owns [{expected[0]}, {expected[1]}) of "
                f"{expected[2]}; re-shard the checkpoint with reshard_states for "
                "the new world size"
            )
        saved_dtype = str(state.get("storage_dtype", "float32"))
        arrays = {}
        for key in ("weight", "momentum"):
            array = np.asarray(state[key])
            if array.shape != (self.shard.num_local, self.embedding_size):
                raise PlscError(
                    f"head shard state {key!r} has shape {array.shape}, expected "
                    f"{(self.shard.num_local, self.embedding_size)}; check "
                    "num_classes and the embedding size"
                )
            if saved_dtype != self.storage_dtype:
                array = center_storage.from_float32(
                    center_storage.to_float32(array, saved_dtype), self.storage_dtype
                )
            arrays[key] = array
        if self.use_fused_gpu_ops:
            # paddle.to_tensor reads uint16 arrays as bfloat16.
            self._weight_gpu = paddle.to_tensor(arrays["weight"])
            self._momentum_gpu = paddle.to_tensor(arrays["momentum"])
        else:
            for key, array in arrays.items():
                np.copyto(self._storage.arrays[key], array, casting="same_kind")
        self.global_step = int(state["step"])
        self.seed = int(state["seed"])
        self._pending = None

    # ---------------------------------------------------------------- GPU path

    def _move_storage_to_gpu(self) -> None:
        # paddle.to_tensor reads uint16 arrays as bfloat16.
        self._weight_gpu = paddle.to_tensor(self._storage.arrays["weight"])
        self._momentum_gpu = paddle.to_tensor(self._storage.arrays["momentum"])
        del self._storage

    def _forward_gpu(
        self, features: paddle.Tensor, labels: paddle.Tensor
    ) -> paddle.Tensor:
        # NOTE: this path has not run on a GPU yet; no CUDA machine was available
        # when it was written. The gpu-marked test in tests/test_partial_fc.py
        # checks it against the CPU path. class_center_sample draws from Paddle's
        # global generator, so here the negatives follow paddle.seed, not ``seed``.
        import paddle.nn.functional as F

        _, world_size = group_rank_and_size(self.group)
        group = self.group if world_size > 1 else False
        if self.num_sample < self.shard.num_local:
            remapped, sampled = F.class_center_sample(
                labels, self.shard.num_local, self.num_sample, group=group
            )
        else:
            remapped = labels
            sampled = paddle.arange(self.shard.num_local, dtype="int64")
        centers = paddle.gather(self._weight_gpu, sampled).astype("float32").detach()
        centers.stop_gradient = False
        logits = paddle.matmul(
            F.normalize(features, axis=1),
            F.normalize(centers, axis=1),
            transpose_y=True,
        )
        m1, m2, m3 = self.margins
        loss = F.margin_cross_entropy(
            logits,
            remapped,
            margin1=m1,
            margin2=m2,
            margin3=m3,
            scale=self.scale,
            group=group,
            reduction="mean",
        )
        self._gpu_pending = (sampled, centers)
        assert isinstance(loss, paddle.Tensor)  # return_softmax=False: loss only
        return loss

    def _step_gpu(self, lr: float) -> None:
        if self._gpu_pending is None or self._gpu_pending[1].grad is None:
            raise RuntimeError("call loss.backward() before head.step()")
        sampled, centers = self._gpu_pending
        center_grad = centers.grad
        assert center_grad is not None
        with paddle.no_grad():
            grad = center_grad.astype("float32")
            weight = centers.detach()
            velocity = paddle.gather(self._momentum_gpu, sampled).astype("float32")
            velocity = self.momentum * velocity + grad + self.weight_decay * weight
            weight = weight - lr * velocity
            dtype: Any = self.storage_dtype
            self._weight_gpu.scatter_(sampled, weight.astype(dtype), overwrite=True)
            self._momentum_gpu.scatter_(sampled, velocity.astype(dtype), overwrite=True)
        self._gpu_pending = None
        self.global_step += 1


def theoretical_bytes_per_class(embedding_size: int, storage_dtype: str) -> int:
    """Return persistent bytes per class: center plus momentum in the storage dtype."""
    itemsize = np.dtype(center_storage.STORAGE_DTYPES[storage_dtype]).itemsize
    return 2 * embedding_size * itemsize


def max_classes_for_memory(
    memory_bytes: int, embedding_size: int, storage_dtype: str, overhead_bytes: int
) -> int:
    """Estimate how many classes fit in ``memory_bytes`` beside ``overhead_bytes``."""
    per_class = theoretical_bytes_per_class(embedding_size, storage_dtype)
    return max(0, math.floor((memory_bytes - overhead_bytes) / per_class))
