"""Class-range bookkeeping for the model-parallel head, and checkpoint re-sharding.

Rank ``r`` of ``world_size`` owns the contiguous class range ``[start, end)``. The
first ``num_classes % world_size`` ranks own one class more than the others, so the
ranges cover ``[0, num_classes)`` in rank order without gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plsc_cli.errors import PlscError

# Keys of a head shard state (see PartialFC.shard_state) that hold one row per class.
ROW_KEYS = ("weight", "momentum")


@dataclass(frozen=True)
class ClassShard:
    """The class range ``[start, end)`` that one rank of the head owns."""

    num_classes: int
    rank: int
    world_size: int

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"rank {self.rank} is outside [0, {self.world_size}) for "
                f"world_size {self.world_size}"
            )
        if self.num_classes < self.world_size:
            raise ValueError(
                f"num_classes ({self.num_classes}) is smaller than the world size "
                f"({self.world_size}); every rank needs at least one class"
            )

    @property
    def start(self) -> int:
        base, extra = divmod(self.num_classes, self.world_size)
        return self.rank * base + min(self.rank, extra)

    @property
    def end(self) -> int:
        return self.start + self.num_local

    @property
    def num_local(self) -> int:
        base, extra = divmod(self.num_classes, self.world_size)
        return base + (1 if self.rank < extra else 0)


def _check_states(states: list[dict[str, Any]]) -> int:
    """Check that the shard states cover ``[0, num_classes)`` in order; return it."""
    if not states:
        raise PlscError("no head shard states to re-shard; the checkpoint is empty")
    num_classes = int(states[0]["num_classes"])
    expected_start = 0
    for index, state in enumerate(states):
        if int(state["num_classes"]) != num_classes:
            raise PlscError(
                f"head shard {index} has num_classes {state['num_classes']}, but "
                f"shard 0 has {num_classes}; the shards come from different runs"
            )
        start, end = int(state["class_start"]), int(state["class_end"])
        if start != expected_start or end < start:
            raise PlscError(
                f"head shard {index} covers classes [{start}, {end}), expected it "
                f"to start at {expected_start}; a shard is missing or out of order"
            )
        for key in ROW_KEYS:
            if state[key].shape[0] != end - start:
                raise PlscError(
                    f"head shard {index} has {state[key].shape[0]} rows of {key!r} "
                    f"for {end - start} classes; the shard is corrupt"
                )
        expected_start = end
    if expected_start != num_classes:
        raise PlscError(
            f"head shards cover classes [0, {expected_start}) of {num_classes}; "
            "a shard is missing"
        )
    return num_classes


def reshard_states(
    states: list[dict[str, Any]], world_size: int
) -> list[dict[str, Any]]:
    """Cut head shard states (in rank order) into ``world_size`` new shards.

    Every non-row entry (step, seed, storage dtype, ...) is taken from the first
    state. A new shard copies only the rows it owns, so peak memory is one new
    shard beside the inputs.
    """
    num_classes = _check_states(states)
    bounds = [(int(s["class_start"]), int(s["class_end"])) for s in states]
    resharded = []
    for rank in range(world_size):
        shard = ClassShard(num_classes, rank, world_size)
        new_state = {k: v for k, v in states[0].items() if k not in ROW_KEYS}
        new_state["class_start"] = shard.start
        new_state["class_end"] = shard.end
        for key in ROW_KEYS:
            pieces = []
            for state, (start, end) in zip(states, bounds, strict=True):
                low, high = max(start, shard.start), min(end, shard.end)
                if low < high:
                    pieces.append(state[key][low - start : high - start])
            new_state[key] = np.concatenate(pieces, axis=0)
        resharded.append(new_state)
    return resharded
