"""ClassShard ranges and re-sharding head states between world sizes."""

from __future__ import annotations

import numpy as np
import pytest

from plsc_cli.distributed.shard import ClassShard, reshard_states
from plsc_cli.errors import PlscError


@pytest.mark.parametrize("num_classes,world_size", [(10, 3), (37, 2), (8, 8), (5, 1)])
def test_shards_cover_classes_in_order(num_classes: int, world_size: int) -> None:
    shards = [ClassShard(num_classes, r, world_size) for r in range(world_size)]
    assert shards[0].start == 0
    assert shards[-1].end == num_classes
    for left, right in zip(shards, shards[1:], strict=False):
        assert left.end == right.start
    sizes = [shard.num_local for shard in shards]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_uneven_split_gives_first_ranks_the_extra_class() -> None:
    ranges = [(s.start, s.end) for s in (ClassShard(10, r, 3) for r in range(3))]
    assert ranges == [(0, 4), (4, 7), (7, 10)]


def test_shard_rejects_bad_rank_and_tiny_class_count() -> None:
    with pytest.raises(ValueError, match="rank 3"):
        ClassShard(10, 3, 3)
    with pytest.raises(ValueError, match="smaller than the world size"):
        ClassShard(2, 0, 3)


def make_states(num_classes: int, world_size: int, dim: int = 3) -> list[dict]:
    full = np.arange(num_classes * dim, dtype=np.float32).reshape(num_classes, dim)
    states = []
    for rank in range(world_size):
        shard = ClassShard(num_classes, rank, world_size)
        states.append(
            {
                "weight": full[shard.start : shard.end].copy(),
                "momentum": -full[shard.start : shard.end].copy(),
                "class_start": shard.start,
                "class_end": shard.end,
                "num_classes": num_classes,
                "step": 42,
                "seed": 5,
                "storage_dtype": "float32",
            }
        )
    return states


@pytest.mark.parametrize("old,new", [(2, 3), (3, 2), (1, 4), (4, 1), (3, 3)])
def test_reshard_keeps_every_row(old: int, new: int) -> None:
    states = make_states(37, old)
    resharded = reshard_states(states, new)
    assert len(resharded) == new
    weight = np.concatenate([s["weight"] for s in resharded])
    momentum = np.concatenate([s["momentum"] for s in resharded])
    np.testing.assert_array_equal(weight, np.concatenate([s["weight"] for s in states]))
    np.testing.assert_array_equal(momentum, -weight)
    for rank, state in enumerate(resharded):
        shard = ClassShard(37, rank, new)
        assert (state["class_start"], state["class_end"]) == (shard.start, shard.end)
        assert state["weight"].shape[0] == shard.num_local
        assert state["step"] == 42
        assert state["seed"] == 5


def test_reshard_rejects_missing_shard() -> None:
    states = make_states(37, 3)
    with pytest.raises(PlscError, match="missing or out of order"):
        reshard_states([states[0], states[2]], 2)
    with pytest.raises(PlscError, match="a shard is missing"):
        reshard_states(states[:2], 2)


def test_reshard_rejects_mixed_runs() -> None:
    states = make_states(37, 2)
    states[1]["num_classes"] = 38
    with pytest.raises(PlscError, match="different runs"):
        reshard_states(states, 3)
