"""Collectives for the model-parallel head that also work on CPU (gloo).

In eager mode ``paddle.distributed.all_gather`` passes no gradient back to its
input, so :func:`all_gather_with_grad` wraps it in a PyLayer. Every helper is a
no-op when the group has one rank or when no process group is initialised.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist
from paddle.autograd import PyLayer


def group_rank_and_size(group: Any = None) -> tuple[int, int]:
    """Return this process's rank in ``group`` and the group's size (0, 1 alone)."""
    if not dist.is_initialized():
        return 0, 1
    if group is None:
        return dist.get_rank(), dist.get_world_size()
    return group.rank, group.nranks


def _gather_row_counts(num_rows: int, group: Any) -> list[int]:
    counts: list[paddle.Tensor] = []
    dist.all_gather(counts, paddle.to_tensor([num_rows], dtype="int64"), group=group)
    return [int(count.numpy()[0]) for count in counts]


class _AllGatherWithGrad(PyLayer):
    """Concatenate every rank's rows; the gradient returns each rank its own rows."""

    @staticmethod
    def forward(ctx: Any, tensor: paddle.Tensor, group: Any) -> paddle.Tensor:
        rank, _ = group_rank_and_size(group)
        counts = _gather_row_counts(tensor.shape[0], group)
        max_rows = max(counts)
        padded = tensor
        if tensor.shape[0] < max_rows:
            padding = paddle.zeros(
                [max_rows - tensor.shape[0], *tensor.shape[1:]], dtype=tensor.dtype
            )
            padded = paddle.concat([tensor, padding], axis=0)
        # all_gather needs the same shape on every rank, so short inputs are padded
        # and the padding is cut off again here.
        gathered: list[paddle.Tensor] = []
        dist.all_gather(gathered, padded, group=group)
        parts = [part[:count] for part, count in zip(gathered, counts, strict=True)]
        ctx.group = group
        ctx.row_start = sum(counts[:rank])
        ctx.row_end = ctx.row_start + counts[rank]
        return paddle.concat(parts, axis=0)

    @staticmethod
    def backward(ctx: Any, grad: paddle.Tensor) -> paddle.Tensor:
        # Each rank has a partial gradient for all gathered rows. Their sum over
        # ranks is the full gradient, and this rank's input owns one slice of it.
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        return total[ctx.row_start : ctx.row_end]


def all_gather_with_grad(tensor: paddle.Tensor, group: Any = None) -> paddle.Tensor:
    """All-gather ``tensor`` along axis 0, with a gradient back to ``tensor``.

    Ranks may pass different numbers of rows; the result concatenates them in rank
    order. The backward pass all-reduces (sums) the gradient of the gathered tensor
    and returns this rank's rows of it.
    """
    _, world_size = group_rank_and_size(group)
    if world_size == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor, group)


def all_gather_no_grad(tensor: paddle.Tensor, group: Any = None) -> paddle.Tensor:
    """All-gather ``tensor`` along axis 0 without a gradient (labels, ids)."""
    _, world_size = group_rank_and_size(group)
    if world_size == 1:
        return tensor
    with paddle.no_grad():
        return _AllGatherWithGrad.apply(tensor.detach(), group).detach()


def all_reduce_array(array: np.ndarray, op: str, group: Any = None) -> np.ndarray:
    """All-reduce a numpy array with ``op`` "sum" or "max" and return a new array.

    Works on gloo for float32, float64 and int64 arrays.
    """
    _, world_size = group_rank_and_size(group)
    if world_size == 1:
        return array.copy()
    ops: dict[str, Any] = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"unknown all-reduce op {op!r}; expected 'sum' or 'max'")
    tensor = paddle.to_tensor(np.ascontiguousarray(array))
    dist.all_reduce(tensor, op=ops[op], group=group)
    return tensor.numpy()


def all_reduce_max(array: np.ndarray, group: Any = None) -> np.ndarray:
    """Element-wise maximum of ``array`` over the ranks of ``group``."""
    return all_reduce_array(array, "max", group)


def all_reduce_sum(array: np.ndarray, group: Any = None) -> np.ndarray:
    """Element-wise sum of ``array`` over the ranks of ``group``."""
    return all_reduce_array(array, "sum", group)
