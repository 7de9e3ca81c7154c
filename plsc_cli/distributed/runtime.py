"""Rank, world size and synchronisation of the running job.

Works the same with one process (no process group) and under
``paddle.distributed.launch``, where the launcher sets ``PADDLE_TRAINER_ID`` and
``PADDLE_TRAINERS_NUM`` for each rank.
"""

from __future__ import annotations

import os


def env_rank() -> int:
    """Return this process's global rank from the launcher's environment."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def env_world_size() -> int:
    """Return the number of ranks from the launcher's environment."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def init_process_group() -> tuple[int, int]:
    """Start the process group when launched with several ranks.

    Returns (rank, world_size). The backend is NCCL on GPU and gloo on CPU, as
    ``paddle.distributed.init_parallel_env`` picks it from the current device.
    """
    world_size = env_world_size()
    if world_size > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank; does nothing with one rank."""
    if env_world_size() > 1:
        import paddle.distributed as dist

        dist.barrier()


def all_reduce_mean_(tensors: list) -> None:
    """Average tensors over ranks in place (gradients of the data-parallel part)."""
    world_size = env_world_size()
    if world_size == 1:
        return
    import paddle.distributed as dist

    for tensor in tensors:
        dist.all_reduce(tensor)
        tensor.scale_(1.0 / world_size)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum Python floats over ranks (for logging and validation counts)."""
    if env_world_size() == 1:
        return list(values)
    import paddle
    import paddle.distributed as dist

    tensor = paddle.to_tensor(values, dtype="float64")
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.numpy()]
