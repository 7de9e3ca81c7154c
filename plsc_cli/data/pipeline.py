"""Training input: image sources, a rank-sharded sampler and a batch loader.

A source maps a sample index to an image and has one int64 label per sample.
``ShardSampler`` gives each rank a disjoint, equally long slice of a per-epoch
permutation, and ``TrainLoader`` turns that slice into batches of float32
``[B, 3, H, W]`` RGB images normalised to ``(x - 127.5) / 127.5``, decoding in
worker processes when asked.

Everything that decides what a batch contains (the permutation, the shard and
the horizontal flips) is a function of (seed, epoch, sample index), so a run
resumed at (epoch, batch) gets the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Protocol

import numpy as np

from plsc_cli.errors import PlscError, PlscUsageError

logger = logging.getLogger(__name__)

IMAGE_SIZE = 112
SYNTHETIC_PREFIX = "synthetic:"
# Samples per class of a "synthetic:<num_classes>" source without a sample count.
SYNTHETIC_IMAGES_PER_CLASS = 10
ACCEPTED_LAYOUTS = (
    "a folder with train.rec and train.idx (RecordIO, InsightFace or im2rec), "
    "a .rec file with its .idx beside it, "
    "a folder with label.txt listing images or per-image kv .bin files, "
    "a label.txt file, "
    "or 'synthetic:<num_classes>[:<num_samples>]'"
)


class ImageSource(Protocol):
    """Indexable training images with one class label each."""

    labels: np.ndarray  # int64 class of each sample
    num_classes: int

    def __len__(self) -> int: ...

    def read(self, index: int) -> bytes | np.ndarray:
        """Return encoded image bytes, or a uint8 HxWx3 RGB array if decoded."""
        ...

    def describe(self, index: int) -> str:
        """Name sample ``index`` in error messages (file path or record key)."""
        ...


class RecordIOSource:
    """Images read straight from a RecordIO dataset (no extraction step)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        from plsc_cli.data.recordio import RecordIOReader, scan_recordio

        index = scan_recordio(root)
        self.rec_path = index.rec_path
        self.layout = index.layout
        self.keys = index.keys
        self.labels = index.labels
        self.num_classes = index.num_classes
        self._reader = RecordIOReader(index.rec_path, index.idx_path)

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, index: int) -> bytes:
        from plsc_cli.data.recordio import unpack_or_raise

        _, image = unpack_or_raise(self._reader, int(self.keys[index]))
        return image

    def describe(self, index: int) -> str:
        return f"{self.rec_path}: record {int(self.keys[index])}"


class LabelFileSource:
    """Images listed in a ``label.txt``: image files or per-image kv ``.bin`` files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from plsc_cli.data.label_file import read_label_file

        path = Path(path)
        label_file = path / "label.txt" if path.is_dir() else path
        dataset = read_label_file(label_file)
        self.label_file = label_file
        self.paths = dataset.paths
        self.labels = dataset.labels
        self.num_classes = dataset.num_classes

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> bytes:
        from plsc_cli.data.kvbin import read_kv_bin

        path = self.paths[index]
        if path.suffix == ".bin":
            return read_kv_bin(path)[1]
        try:
            return path.read_bytes()
        except OSError as exc:
            raise PlscError(f"failed to read image {path}: {exc.strerror}") from None

    def describe(self, index: int) -> str:
        return str(self.paths[index])


class SyntheticSource:
    """Random images made in memory, for benchmarks without data or decoding.

    Sample ``i`` has label ``i % num_classes`` and one of a small bank of smooth
    random images, returned already decoded.
    """

    BANK_SIZE = 16

    def __init__(
        self,
        num_classes: int,
        num_samples: int | None = None,
        image_size: int = IMAGE_SIZE,
        seed: int = 0,
    ) -> None:
        import cv2

        if num_classes < 1:
            raise PlscUsageError(
                f"invalid synthetic class count {num_classes}; use at least 1"
            )
        if num_samples is None:
            num_samples = num_classes * SYNTHETIC_IMAGES_PER_CLASS
        self.num_classes = num_classes
        self.labels = np.arange(num_samples, dtype=np.int64) % num_classes
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, size=(self.BANK_SIZE, 8, 8, 3), dtype=np.uint8)
        self._bank = [
            cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
            for image in coarse
        ]

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, index: int) -> np.ndarray:
        return self._bank[index % self.BANK_SIZE]

    def describe(self, index: int) -> str:
        return f"synthetic sample {index}"


def _parse_synthetic_spec(spec: str) -> SyntheticSource:
    fields = spec[len(SYNTHETIC_PREFIX) :].split(":")
    try:
        values = [int(field) for field in fields]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise PlscUsageError(
            f"invalid synthetic data spec {spec!r}; use 'synthetic:<num_classes>' "
            "or 'synthetic:<num_classes>:<num_samples>' with positive integers"
        )
    return SyntheticSource(*values)


def build_train_source(spec: str | os.PathLike[str]) -> ImageSource:
    """Open the training data at ``spec``: a path, or 'synthetic:<num_classes>'.

    Raises :class:`PlscError` listing the accepted layouts when the path is
    missing or matches none of them.
    """
    text = os.fspath(spec)
    if text.startswith(SYNTHETIC_PREFIX):
        return _parse_synthetic_spec(text)
    path = Path(text)
    if not path.exists():
        raise PlscError(
            f"training data not found: {path}; pass one of: {ACCEPTED_LAYOUTS}"
        )
    if path.is_dir():
        if (path / "label.txt").is_file():
            return LabelFileSource(path)
        if any(path.glob("*.rec")):
            return RecordIOSource(path)
    elif path.suffix == ".rec":
        return RecordIOSource(path)
    elif path.suffix == ".txt":
        return LabelFileSource(path)
    raise PlscError(
        f"{path}: not a training data layout plsc can read; pass one of: "
        f"{ACCEPTED_LAYOUTS}"
    )


class ShardSampler:
    """Disjoint per-rank shards of a per-epoch permutation of the samples.

    Every rank gets ``num_samples // world_size`` samples, so all ranks run the
    same number of steps, which collectives need. The last
    ``num_samples % world_size`` samples of each epoch's permutation are
    skipped, so with shuffling a different few are left out each epoch.
    """

    def __init__(
        self,
        num_samples: int,
        rank: int,
        world_size: int,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world size {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if num_samples < world_size:
            raise PlscError(
                f"the training data has {num_samples} samples, fewer than the "
                f"{world_size} ranks; use more data or fewer ranks"
            )
        self.num_samples = num_samples
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def indices(self, epoch: int) -> np.ndarray:
        """Return this rank's int64 sample indices for ``epoch``, in order."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.num_samples).astype(np.int64)
        else:
            order = np.arange(self.num_samples, dtype=np.int64)
        return order[self.rank :: self.world_size][: len(self)]


_MIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed uint64 hash of each element."""
    with np.errstate(over="ignore"):
        x = x + _MIX_GAMMA
        x = (x ^ (x >> np.uint64(30))) * _MIX_MUL1
        x = (x ^ (x >> np.uint64(27))) * _MIX_MUL2
    return x ^ (x >> np.uint64(31))


def flip_mask(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """Return which samples to flip horizontally: a bool per index, p = 0.5.

    The decision is a hash of (seed, epoch, sample index), the same on every
    rank and for every batch size.
    """
    state = _mix64(np.asarray([seed], dtype=np.uint64))
    state = _mix64(state ^ np.uint64(epoch))
    hashed = _mix64(state ^ np.asarray(indices, dtype=np.uint64))
    return (hashed >> np.uint64(63)).astype(bool)


def load_image(source: ImageSource, index: int, image_size: int) -> np.ndarray:
    """Read and decode sample ``index`` as uint8 ``image_size``x``image_size``x3 RGB.

    Images of another size are resized with bilinear interpolation.
    """
    import cv2

    from plsc_cli.data.image import ImageDecodeError, decode_image

    data = source.read(index)
    if isinstance(data, np.ndarray):
        image = data
    else:
        try:
            image = decode_image(data)
        except ImageDecodeError as exc:
            raise PlscError(f"{source.describe(index)}: {exc}") from None
    if image.shape[:2] != (image_size, image_size):
        image = cv2.resize(
            image, (image_size, image_size), interpolation=cv2.INTER_LINEAR
        )
    return image


def load_batch(
    source: ImageSource, indices: np.ndarray, flips: np.ndarray, image_size: int
) -> np.ndarray:
    """Decode the images of ``indices`` into a uint8 ``[B, 3, H, W]`` RGB batch.

    Images whose ``flips`` entry is true are flipped horizontally.
    """
    batch = np.empty((len(indices), 3, image_size, image_size), dtype=np.uint8)
    for row, (index, flip) in enumerate(zip(indices, flips, strict=True)):
        image = load_image(source, int(index), image_size)
        if flip:
            image = image[:, ::-1]
        batch[row] = image.transpose(2, 0, 1)
    return batch


def normalize(batch: np.ndarray) -> np.ndarray:
    """Map uint8 pixels to float32 ``(x - 127.5) / 127.5`` in [-1, 1]."""
    # Subtracting with a float32 output dtype converts and shifts in one pass.
    images = np.subtract(batch, np.float32(127.5), dtype=np.float32)
    images /= np.float32(127.5)
    return images


# Per-process state of a loader worker, set once by _init_worker.
_worker_source: ImageSource | None = None


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with the process that started it (Linux only).

    A rank killed with SIGKILL cannot shut its pool down, and its workers would
    otherwise wait on their task queue forever.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl is not available; workers may outlive a killed rank")
        return
    # The parent may have died before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_worker(source: ImageSource, parent_pid: int) -> None:
    import cv2

    _exit_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the rank handles it and stops the
    # pool, so a worker printing its own KeyboardInterrupt traceback is noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _worker_source
    # Parallelism comes from the worker processes; one thread each avoids
    # oversubscribing the cores.
    cv2.setNumThreads(1)
    _worker_source = source


def _load_batch_in_worker(
    indices: np.ndarray, flips: np.ndarray, image_size: int
) -> np.ndarray:
    assert _worker_source is not None, "worker started without _init_worker"
    return load_batch(_worker_source, indices, flips, image_size)


def _default_start_method() -> str:
    # fork starts workers quickly and does not re-import the main module.
    return "fork" if sys.platform.startswith("linux") else "spawn"


class TrainLoader:
    """Batches of one rank's shard: (float32 images [B, 3, H, W], int64 labels [B]).

    Every epoch has ``len(loader)`` full batches; the tail of the shard that does
    not fill a batch is dropped so that every rank runs the same number of steps.
    With ``num_workers > 0`` a persistent pool of processes decodes whole
    batches, with up to ``prefetch_batches`` batches in flight; results come back
    in order, identical to ``num_workers=0``. Call ``close()`` (or use ``with``)
    to stop the workers.
    """

    def __init__(
        self,
        source: ImageSource,
        sampler: ShardSampler,
        batch_size: int,
        num_workers: int = 0,
        flip: bool = True,
        seed: int = 0,
        image_size: int = IMAGE_SIZE,
        prefetch_batches: int | None = None,
        start_method: str | None = None,
    ) -> None:
        if len(source) != sampler.num_samples:
            raise ValueError(
                f"sampler covers {sampler.num_samples} samples but the source "
                f"has {len(source)}"
            )
        if batch_size < 1:
            raise PlscUsageError(f"invalid batch size {batch_size}; use 1 or more")
        if num_workers < 0:
            raise PlscUsageError(
                f"invalid number of data workers {num_workers}; use 0 or more"
            )
        self.source = source
        self.sampler = sampler
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.flip = flip
        self.seed = seed
        self.image_size = image_size
        self.prefetch_batches = prefetch_batches or max(2, 2 * num_workers)
        self.start_method = start_method or _default_start_method()
        self._executor: ProcessPoolExecutor | None = None
        if len(self) == 0:
            raise PlscError(
                f"each of the {sampler.world_size} ranks gets {len(sampler)} "
                f"samples, fewer than one batch of {batch_size}; lower the batch "
                "size or use more data"
            )

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def batch_indices(self, epoch: int) -> np.ndarray:
        """Return the sample indices of every batch of ``epoch``: [batches, B]."""
        usable = len(self) * self.batch_size
        return self.sampler.indices(epoch)[:usable].reshape(len(self), -1)

    def epoch_batches(
        self, epoch: int, start_batch: int = 0
    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Yield the batches of ``epoch`` from batch ``start_batch`` on.

        Closing the generator early cancels the batches still queued.
        """
        if not 0 <= start_batch <= len(self):
            raise ValueError(
                f"start_batch {start_batch} is outside the epoch's 0..{len(self)} "
                "batches"
            )
        batches = self.batch_indices(epoch)[start_batch:]
        labels = self.source.labels
        for indices, images in zip(batches, self._images(epoch, batches), strict=True):
            yield normalize(images), labels[indices]

    def _flips(self, epoch: int, indices: np.ndarray) -> np.ndarray:
        if not self.flip:
            return np.zeros(len(indices), dtype=bool)
        return flip_mask(self.seed, epoch, indices)

    def _images(self, epoch: int, batches: np.ndarray) -> Iterator[np.ndarray]:
        if self.num_workers == 0:
            for indices in batches:
                flips = self._flips(epoch, indices)
                yield load_batch(self.source, indices, flips, self.image_size)
            return

        executor = self._get_executor()
        pending: deque[Future[np.ndarray]] = deque()
        next_batch = 0
        try:
            while next_batch < len(batches) or pending:
                while (
                    next_batch < len(batches) and len(pending) < self.prefetch_batches
                ):
                    indices = batches[next_batch]
                    pending.append(
                        executor.submit(
                            _load_batch_in_worker,
                            indices,
                            self._flips(epoch, indices),
                            self.image_size,
                        )
                    )
                    next_batch += 1
                try:
                    yield pending.popleft().result()
                except BrokenProcessPool:
                    self.close()
                    raise PlscError(
                        "a data loader worker process exited unexpectedly (killed, "
                        "or out of memory); lower --num-workers or the batch size"
                    ) from None
        finally:
            for future in pending:
                future.cancel()

    def _get_executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context(self.start_method)
            self._executor = ProcessPoolExecutor(
                max_workers=self.num_workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.source, os.getpid()),
            )
            logger.debug(
                "started %d data loader workers (%s)",
                self.num_workers,
                self.start_method,
            )
        return self._executor

    def close(self) -> None:
        """Stop the worker processes; a later epoch starts new ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> TrainLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
