"""Training input pipeline: sources, rank shards, batches, flips and workers."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from plsc_cli.data.kvbin import write_kv_bin
from plsc_cli.data.pipeline import (
    LabelFileSource,
    RecordIOSource,
    ShardSampler,
    SyntheticSource,
    TrainLoader,
    build_train_source,
    flip_mask,
)
from plsc_cli.data.recordio import RecordIOReader, scan_recordio, unpack_payload
from plsc_cli.data.synthetic import write_synthetic_recordio
from plsc_cli.errors import PlscError, PlscUsageError

NUM_CLASSES = 6
IMAGES_PER_CLASS = 7


class ListSource:
    """Encoded images held in memory, for exact pixel checks."""

    def __init__(self, images: list[bytes], labels: list[int]) -> None:
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int) -> bytes:
        return self.images[index]

    def describe(self, index: int) -> str:
        return f"list image {index}"


def _png(image_bgr: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image_bgr)
    assert ok
    return data.tobytes()


def _extract(rec_dir: Path, out_dir: Path, kv_bin: bool = False) -> Path:
    """Write every image record of ``rec_dir`` as a file plus a label.txt."""
    index = scan_recordio(rec_dir)
    lines = []
    (out_dir / "images").mkdir(parents=True)
    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        for key, label in zip(index.keys, index.labels, strict=True):
            _, image = unpack_payload(reader.read(int(key)))
            name = f"images/{int(key):06d}" + (".bin" if kv_bin else ".jpg")
            if kv_bin:
                write_kv_bin(out_dir / name, f"{int(key):06d}.jpg", image)
            else:
                (out_dir / name).write_bytes(image)
            lines.append(f"{name}\t{int(label)}\n")
    (out_dir / "label.txt").write_text("".join(lines))
    return out_dir


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rec")
    return write_synthetic_recordio(folder, NUM_CLASSES, IMAGES_PER_CLASS, seed=1)


# Sampler


@pytest.mark.parametrize("num_samples", [40, 43])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_disjoint_equal_covering(num_samples: int, world_size: int) -> None:
    shards = [
        ShardSampler(num_samples, rank, world_size, seed=7).indices(epoch=2)
        for rank in range(world_size)
    ]
    per_rank = num_samples // world_size
    for shard in shards:
        assert len(shard) == per_rank
        assert shard.dtype == np.int64
    merged = np.concatenate(shards)
    assert len(np.unique(merged)) == len(merged)
    assert merged.min() >= 0
    assert merged.max() < num_samples
    # Only the remainder of the division is left out.
    assert num_samples - len(merged) == num_samples % world_size


def test_sampler_deterministic_per_seed() -> None:
    a = ShardSampler(100, 1, 2, seed=3).indices(5)
    b = ShardSampler(100, 1, 2, seed=3).indices(5)
    c = ShardSampler(100, 1, 2, seed=4).indices(5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampler_reshuffles_each_epoch() -> None:
    sampler = ShardSampler(100, 0, 2, seed=3)
    first, second = sampler.indices(0), sampler.indices(1)
    assert not np.array_equal(first, second)
    assert set(first) != set(second)


def test_sampler_without_shuffle() -> None:
    sampler = ShardSampler(10, 1, 3, shuffle=False)
    np.testing.assert_array_equal(sampler.indices(0), [1, 4, 7])
    np.testing.assert_array_equal(sampler.indices(9), [1, 4, 7])


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank 2"):
        ShardSampler(10, 2, 2)
    with pytest.raises(PlscError, match="fewer than the 4 ranks"):
        ShardSampler(3, 0, 4)


# Loader


def test_equal_batches_on_every_rank(rec_dir: Path) -> None:
    source = RecordIOSource(rec_dir)
    assert len(source) == 42
    lengths = []
    for rank in range(3):
        sampler = ShardSampler(len(source), rank, 3, seed=0)
        loader = TrainLoader(source, sampler, batch_size=4)
        batches = list(loader.epoch_batches(0))
        assert len(batches) == len(loader)
        lengths.append(len(batches))
    # 42 samples / 3 ranks = 14 each, 3 full batches of 4 (2 samples dropped).
    assert lengths == [3, 3, 3]


def test_batch_shapes_and_labels(rec_dir: Path) -> None:
    source = RecordIOSource(rec_dir)
    loader = TrainLoader(source, ShardSampler(len(source), 0, 2, seed=1), 5)
    indices = loader.batch_indices(3)
    for row, (images, labels) in enumerate(loader.epoch_batches(3)):
        assert images.shape == (5, 3, 112, 112)
        assert images.dtype == np.float32
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, source.labels[indices[row]])
        assert images.min() >= -1.0
        assert images.max() <= 1.0


def test_resume_equals_epoch_tail(rec_dir: Path) -> None:
    source = RecordIOSource(rec_dir)
    loader = TrainLoader(source, ShardSampler(len(source), 1, 2, seed=5), 4)
    full = list(loader.epoch_batches(1))
    tail = list(loader.epoch_batches(1, start_batch=3))
    assert len(tail) == len(full) - 3
    for (images, labels), (full_images, full_labels) in zip(
        tail, full[3:], strict=True
    ):
        np.testing.assert_array_equal(images, full_images)
        np.testing.assert_array_equal(labels, full_labels)
    assert list(loader.epoch_batches(1, start_batch=len(loader))) == []
    with pytest.raises(ValueError, match="start_batch"):
        next(loader.epoch_batches(1, start_batch=len(loader) + 1))


def test_batches_differ_between_epochs(rec_dir: Path) -> None:
    source = RecordIOSource(rec_dir)
    loader = TrainLoader(source, ShardSampler(len(source), 0, 1, seed=5), 8)
    first = next(loader.epoch_batches(0))[0]
    second = next(loader.epoch_batches(1))[0]
    assert not np.array_equal(first, second)


def test_normalization_rgb_and_flip() -> None:
    rng = np.random.default_rng(0)
    bgr = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(16)]
    source = ListSource([_png(image) for image in bgr], list(range(16)))
    sampler = ShardSampler(16, 0, 1, seed=2)
    order = sampler.indices(4)

    def expected(index: int, flip: bool) -> np.ndarray:
        rgb = bgr[index][:, :, ::-1]
        if flip:
            rgb = rgb[:, ::-1]
        return (rgb.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5

    plain = TrainLoader(source, sampler, 16, flip=False)
    images, labels = next(plain.epoch_batches(4))
    np.testing.assert_array_equal(labels, order)
    for row, index in enumerate(order):
        np.testing.assert_array_equal(images[row], expected(index, flip=False))

    flipped = TrainLoader(source, sampler, 16, flip=True, seed=9)
    images, _ = next(flipped.epoch_batches(4))
    flips = flip_mask(9, 4, order)
    assert 0 < flips.sum() < len(flips)
    for row, index in enumerate(order):
        np.testing.assert_array_equal(images[row], expected(index, flips[row]))


def test_flip_mask_balanced_and_keyed() -> None:
    indices = np.arange(10000)
    mask = flip_mask(0, 0, indices)
    assert 0.47 < mask.mean() < 0.53
    np.testing.assert_array_equal(mask[500:600], flip_mask(0, 0, indices[500:600]))
    assert not np.array_equal(mask, flip_mask(0, 1, indices))
    assert not np.array_equal(mask, flip_mask(1, 0, indices))


def test_resize_other_sizes() -> None:
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    source = ListSource([_png(bgr), _png(bgr)], [0, 1])
    loader = TrainLoader(source, ShardSampler(2, 0, 1, shuffle=False), 2, flip=False)
    images, _ = next(loader.epoch_batches(0))
    rgb = cv2.resize(bgr[:, :, ::-1], (112, 112), interpolation=cv2.INTER_LINEAR)
    reference = (rgb.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5
    np.testing.assert_array_equal(images[0], reference)


def test_undecodable_image_names_sample() -> None:
    source = ListSource([b"not an image", b"x"], [0, 1])
    loader = TrainLoader(source, ShardSampler(2, 0, 1, shuffle=False), 2)
    with pytest.raises(PlscError, match="list image 0"):
        next(loader.epoch_batches(0))


def test_too_little_data_for_batch(rec_dir: Path) -> None:
    source = RecordIOSource(rec_dir)
    with pytest.raises(PlscError, match="fewer than one batch of 64"):
        TrainLoader(source, ShardSampler(len(source), 0, 2), batch_size=64)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_match_single_process(rec_dir: Path, start_method: str) -> None:
    source = RecordIOSource(rec_dir)
    sampler = ShardSampler(len(source), 0, 2, seed=11)
    reference = list(TrainLoader(source, sampler, 4).epoch_batches(2, start_batch=1))
    with TrainLoader(
        source, sampler, 4, num_workers=2, start_method=start_method
    ) as loader:
        for _ in range(2):  # the second pass reuses the running workers
            batches = list(loader.epoch_batches(2, start_batch=1))
            assert len(batches) == len(reference)
            for (images, labels), (ref_images, ref_labels) in zip(
                batches, reference, strict=True
            ):
                np.testing.assert_array_equal(images, ref_images)
                np.testing.assert_array_equal(labels, ref_labels)


def test_worker_error_reaches_caller() -> None:
    source = ListSource([b"not an image"] * 4, [0, 1, 2, 3])
    with TrainLoader(source, ShardSampler(4, 0, 1), 2, num_workers=1) as loader:
        with pytest.raises(PlscError, match="list image"):
            list(loader.epoch_batches(0))


class ExitingSource(ListSource):
    """Ends the worker process that reads it, as a kill or OOM would."""

    def read(self, index: int) -> bytes:
        os._exit(3)


def test_dead_worker_raises() -> None:
    source = ExitingSource([b""] * 4, [0, 1, 2, 3])
    with TrainLoader(source, ShardSampler(4, 0, 1), 2, num_workers=1) as loader:
        with pytest.raises(PlscError, match="worker process exited"):
            list(loader.epoch_batches(0))


# Sources


def test_label_file_sources_match_recordio(rec_dir: Path, tmp_path: Path) -> None:
    rec = RecordIOSource(rec_dir)
    files = LabelFileSource(_extract(rec_dir, tmp_path / "files"))
    kv = LabelFileSource(_extract(rec_dir, tmp_path / "kv", kv_bin=True) / "label.txt")
    for source in (files, kv):
        assert len(source) == len(rec)
        assert source.num_classes == NUM_CLASSES
        np.testing.assert_array_equal(source.labels, rec.labels)
        for index in (0, 17, len(rec) - 1):
            assert source.read(index) == rec.read(index)


def test_build_source_picks_layout(rec_dir: Path, tmp_path: Path) -> None:
    assert isinstance(build_train_source(rec_dir), RecordIOSource)
    assert isinstance(build_train_source(str(rec_dir / "train.rec")), RecordIOSource)
    label_dir = _extract(rec_dir, tmp_path / "files")
    assert isinstance(build_train_source(label_dir), LabelFileSource)
    assert isinstance(build_train_source(label_dir / "label.txt"), LabelFileSource)
    synthetic = build_train_source("synthetic:50")
    assert isinstance(synthetic, SyntheticSource)
    assert synthetic.num_classes == 50
    assert len(synthetic) == 500
    assert len(build_train_source("synthetic:50:120")) == 120


def test_build_source_errors_list_layouts(tmp_path: Path) -> None:
    with pytest.raises(PlscError, match="train.rec and train.idx") as info:
        build_train_source(tmp_path)
    assert "label.txt" in str(info.value)
    assert "synthetic:<num_classes>" in str(info.value)
    with pytest.raises(PlscError, match="not found"):
        build_train_source(tmp_path / "missing")
    with pytest.raises(PlscUsageError, match="synthetic:abc"):
        build_train_source("synthetic:abc")


def test_synthetic_source_batches() -> None:
    source = SyntheticSource(num_classes=3, num_samples=20)
    np.testing.assert_array_equal(source.labels[:5], [0, 1, 2, 0, 1])
    loader = TrainLoader(source, ShardSampler(20, 0, 1), 8)
    images, labels = next(loader.epoch_batches(0))
    assert images.shape == (8, 3, 112, 112)
    assert images.std() > 0.1


# Real data written by MXNet and by an MS1M extraction


def test_real_recordio_batches(shared: type) -> None:
    folder = shared.path("data", "rec", "friends112")
    source = build_train_source(folder)
    assert isinstance(source, RecordIOSource)
    assert len(source) == 245
    assert source.num_classes == 6
    sampler = ShardSampler(len(source), 1, 2, seed=0)
    loader = TrainLoader(source, sampler, 16, flip=False)
    # 245 // 2 = 122 samples per rank, 7 full batches of 16.
    assert len(loader) == 7
    indices = loader.batch_indices(0)[0]
    images, labels = next(loader.epoch_batches(0))
    np.testing.assert_array_equal(labels, source.labels[indices])
    with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
        _, data = unpack_payload(reader.read(int(source.keys[indices[0]])))
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    expected = (bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5
    np.testing.assert_array_equal(images[0], expected)


def test_real_label_file_batches(shared: type) -> None:
    folder = shared.path("data", "ms1m_small")
    source = build_train_source(folder)
    assert isinstance(source, LabelFileSource)
    assert len(source) == 10
    loader = TrainLoader(source, ShardSampler(10, 0, 1, seed=0), 5)
    batches = list(loader.epoch_batches(0))
    assert len(batches) == 2
    assert batches[0][0].shape == (5, 3, 112, 112)
