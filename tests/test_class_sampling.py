"""Class-center sampling: positives, counts, uniform negatives, seeds, Paddle parity."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from plsc_cli.distributed.shard import ClassShard
from plsc_cli.heads.sampling import num_samples_for_ratio, sample_classes


def test_positives_come_first_in_ascending_order() -> None:
    shard = ClassShard(1000, rank=1, world_size=3)  # classes [334, 667)
    labels = np.array([400, 12, 650, 400, 334, 999, 500])
    sampled = sample_classes(labels, shard, num_sample=50, seed=0, step=0)
    local_positives = np.array([334, 400, 500, 650]) - shard.start
    assert sampled.num_positive == 4
    np.testing.assert_array_equal(sampled.indices[:4], local_positives)


def test_labels_remap_to_sampled_positions() -> None:
    shard = ClassShard(1000, rank=1, world_size=3)
    labels = np.array([400, 12, 650, 400, 334, 999, 500])
    sampled = sample_classes(labels, shard, num_sample=50, seed=0, step=0)
    expected = np.array([1, -1, 3, 1, 0, -1, 2])
    np.testing.assert_array_equal(sampled.remapped_labels, expected)
    in_shard = expected >= 0
    np.testing.assert_array_equal(
        sampled.indices[sampled.remapped_labels[in_shard]] + shard.start,
        labels[in_shard],
    )


def test_sampled_count_and_distinct_classes() -> None:
    shard = ClassShard(10001, rank=0, world_size=2)
    rng = np.random.default_rng(0)
    for step in range(20):
        labels = rng.integers(0, 10001, 64)
        sampled = sample_classes(labels, shard, num_sample=500, seed=1, step=step)
        assert sampled.indices.size == 500
        assert np.unique(sampled.indices).size == 500
        assert sampled.indices.min() >= 0
        assert sampled.indices.max() < shard.num_local
        negatives = sampled.indices[sampled.num_positive :]
        assert np.all(np.diff(negatives) > 0)


def test_all_positives_kept_when_they_exceed_num_sample() -> None:
    shard = ClassShard(100, rank=0, world_size=1)
    labels = np.arange(0, 100, 3)  # 34 distinct positives
    sampled = sample_classes(labels, shard, num_sample=10, seed=0, step=0)
    assert sampled.indices.size == 34
    np.testing.assert_array_equal(sampled.indices, labels)


def test_num_samples_rounds_and_clamps() -> None:
    assert num_samples_for_ratio(0.1, 1_000_000) == 100_000
    assert num_samples_for_ratio(0.7, 100) == 70
    assert num_samples_for_ratio(0.25, 10) == 2  # round(2.5) is 2, ties to even
    assert num_samples_for_ratio(0.01, 10) == 1
    assert num_samples_for_ratio(1.0, 7) == 7
    with pytest.raises(ValueError, match="sample_ratio"):
        num_samples_for_ratio(1.5, 10)


def test_sampling_is_deterministic_for_seed_and_step() -> None:
    shard = ClassShard(5000, rank=0, world_size=1)
    labels = np.array([5, 17, 4000])
    first = sample_classes(labels, shard, 300, seed=7, step=3).indices
    again = sample_classes(labels, shard, 300, seed=7, step=3).indices
    next_step = sample_classes(labels, shard, 300, seed=7, step=4).indices
    other_seed = sample_classes(labels, shard, 300, seed=8, step=3).indices
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, next_step)
    assert not np.array_equal(first, other_seed)


def test_negatives_are_uniform() -> None:
    # Chi-square goodness of fit over 4000 steps: 50 negatives from 196 classes.
    num_classes, num_sample, steps = 200, 54, 4000
    shard = ClassShard(num_classes, rank=0, world_size=1)
    labels = np.array([3, 77, 150, 199])
    counts = np.zeros(num_classes)
    for step in range(steps):
        sampled = sample_classes(labels, shard, num_sample, seed=11, step=step)
        counts[sampled.indices[sampled.num_positive :]] += 1
    negatives = np.setdiff1d(np.arange(num_classes), labels)
    assert np.all(counts[labels] == 0)
    observed = counts[negatives]
    share = (num_sample - labels.size) / negatives.size
    expected = steps * share
    # Drawing without replacement shrinks each count's variance by (1 - share), so
    # the statistic is divided by it to follow chi-square with 195 degrees of
    # freedom. Its 0.001 and 0.999 quantiles are about 140 and 262.
    chi_square = float(((observed - expected) ** 2 / (expected * (1 - share))).sum())
    assert chi_square < 262.0
    assert chi_square > 140.0


@pytest.mark.parametrize("num_sample", [6, 9, 15])
def test_same_semantics_as_paddle_class_center_sample(num_sample: int) -> None:
    num_classes = 20
    labels = np.array([11, 5, 1, 3, 12, 2, 15, 19, 18, 19])
    remapped, paddle_sampled = paddle.nn.functional.class_center_sample(
        paddle.to_tensor(labels), num_classes, num_sample
    )
    ours = sample_classes(
        labels, ClassShard(num_classes, 0, 1), num_sample, seed=0, step=0
    )
    paddle_sampled = paddle_sampled.numpy()
    num_positive = np.unique(labels).size

    assert ours.indices.size == paddle_sampled.size
    np.testing.assert_array_equal(ours.remapped_labels, remapped.numpy())
    np.testing.assert_array_equal(
        ours.indices[:num_positive], paddle_sampled[:num_positive]
    )
    assert set(ours.indices[num_positive:]).isdisjoint(labels)
    assert set(paddle_sampled[num_positive:]).isdisjoint(labels)
