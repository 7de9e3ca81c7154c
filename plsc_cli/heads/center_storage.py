"""Row storage for class centers and momentum in float32, float16 or bfloat16.

NumPy has no bfloat16 type, so bfloat16 rows are stored as uint16 bit patterns
(the upper half of the float32 bits) and converted with integer shifts. Rows are
always read and written through float32 buffers: the arithmetic happens in float32,
half precision only saves memory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

STORAGE_DTYPES: dict[str, type[np.generic]] = {
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": np.uint16,
}

# Initial centers are drawn in blocks of this many classes, each block from its own
# seeded generator, so the centers do not depend on how the classes are sharded.
INIT_BLOCK_ROWS = 1 << 16
INIT_STD = 0.01


def check_storage_dtype(name: str) -> None:
    if name not in STORAGE_DTYPES:
        choices = ", ".join(STORAGE_DTYPES)
        raise ValueError(f"unknown storage dtype {name!r}; choose one of {choices}")


def widen(raw: np.ndarray, out: np.ndarray, dtype_name: str) -> np.ndarray:
    """Convert stored rows ``raw`` into the float32 array ``out`` and return it."""
    if dtype_name == "bfloat16":
        np.left_shift(raw, 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        np.copyto(out, raw)
    return out


def narrow(
    values: np.ndarray, out: np.ndarray, dtype_name: str, scratch: np.ndarray | None
) -> np.ndarray:
    """Round float32 ``values`` into the storage array ``out`` and return it.

    bfloat16 rounds to nearest, ties to even, and needs a uint32 ``scratch`` array
    of the same shape.
    """
    if dtype_name != "bfloat16":
        np.copyto(out, values, casting="same_kind")
        return out
    assert scratch is not None
    bits = values.view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit, then truncating, rounds to nearest
    # even. NOTE: NaN payloads can turn into infinities here; a NaN center means
    # training has already diverged.
    np.right_shift(bits, 16, out=scratch)
    np.bitwise_and(scratch, 1, out=scratch)
    scratch += 0x7FFF
    scratch += bits
    np.right_shift(scratch, 16, out=scratch)
    np.copyto(out, scratch, casting="unsafe")
    return out


def to_float32(raw: np.ndarray, dtype_name: str) -> np.ndarray:
    """Return stored rows as a new float32 array."""
    return widen(raw, np.empty(raw.shape, np.float32), dtype_name)


def from_float32(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """Return float32 rows rounded into a new storage array."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(values.shape, STORAGE_DTYPES[dtype_name])
    scratch = np.empty(values.shape, np.uint32) if dtype_name == "bfloat16" else None
    return narrow(values, out, dtype_name, scratch)


def init_centers(
    out: np.ndarray, class_start: int, dtype_name: str, seed: int, num_threads: int = 1
) -> np.ndarray:
    """Fill ``out`` (rows for classes ``class_start...``) with N(0, INIT_STD^2) centers.

    Row ``c`` gets the same value whatever the shard boundaries are, because every
    block of ``INIT_BLOCK_ROWS`` classes has its own generator seeded by
    ``(seed, block)``. Blocks are drawn on ``num_threads`` threads.
    """
    num_rows, dim = out.shape
    class_end = class_start + num_rows

    def fill_block(block: int) -> None:
        block_start = block * INIT_BLOCK_ROWS
        rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
        values = rng.standard_normal((INIT_BLOCK_ROWS, dim), dtype=np.float32)
        values *= INIT_STD
        low = max(class_start, block_start)
        high = min(class_end, block_start + INIT_BLOCK_ROWS)
        part = values[low - block_start : high - block_start]
        scratch = None
        if dtype_name == "bfloat16":
            scratch = np.empty(part.shape, np.uint32)
        narrow(part, out[low - class_start : high - class_start], dtype_name, scratch)

    if num_rows == 0:
        return out
    blocks = range(
        class_start // INIT_BLOCK_ROWS, (class_end - 1) // INIT_BLOCK_ROWS + 1
    )
    if num_threads <= 1 or len(blocks) == 1:
        for block in blocks:
            fill_block(block)
    else:
        with ThreadPoolExecutor(num_threads) as executor:
            list(executor.map(fill_block, blocks))
    return out


class ShardStorage:
    """Centers and momentum of one shard, read and written as float32 row chunks.

    Scratch buffers are cached per ``(name, worker)``, so worker threads that handle
    different chunks never share one, and their size stays at most ``max_rows``
    rows unless a caller asks for more.
    """

    def __init__(
        self,
        num_rows: int,
        dim: int,
        dtype_name: str,
        class_start: int,
        seed: int,
        max_rows: int,
        num_threads: int = 1,
    ) -> None:
        check_storage_dtype(dtype_name)
        self.dtype_name = dtype_name
        self.dim = dim
        self.max_rows = max_rows
        numpy_dtype = STORAGE_DTYPES[dtype_name]
        self.arrays = {
            "weight": init_centers(
                np.empty((num_rows, dim), numpy_dtype),
                class_start,
                dtype_name,
                seed,
                num_threads,
            ),
            "momentum": np.empty((num_rows, dim), numpy_dtype),
        }
        # fill() touches every page, so the momentum's memory is committed now and
        # not on some later step.
        self.arrays["momentum"].fill(0)
        self._scratch: dict[tuple[str, int, str], np.ndarray] = {}

    @property
    def num_rows(self) -> int:
        return self.arrays["weight"].shape[0]

    def scratch(
        self, name: str, rows: int, dtype: type[np.generic], worker: int = 0
    ) -> np.ndarray:
        """Return a reused [rows, dim] array for ``worker``; contents are undefined."""
        key = (name, worker, np.dtype(dtype).name)
        buffer = self._scratch.get(key)
        if buffer is None or buffer.shape[0] < rows:
            buffer = np.empty((max(rows, self.max_rows), self.dim), dtype)
            self._scratch[key] = buffer
        return buffer[:rows]

    def release_scratch(self) -> None:
        self._scratch.clear()

    def read_rows(
        self, name: str, indices: np.ndarray | None, start: int, end: int, worker: int
    ) -> np.ndarray:
        """Return float32 rows ``indices[start:end]`` of "weight" or "momentum".

        ``indices=None`` means rows ``start:end`` themselves. With float32 storage
        that is a view, so in-place updates write through and ``write_rows`` has
        nothing to do.
        """
        storage = self.arrays[name]
        rows = end - start
        if indices is None:
            raw = storage[start:end]
            if self.dtype_name == "float32":
                return raw
        else:
            target = storage.dtype.type
            raw_name = name if self.dtype_name == "float32" else f"{name}-raw"
            raw = np.take(
                storage,
                indices[start:end],
                axis=0,
                out=self.scratch(raw_name, rows, target, worker),
            )
            if self.dtype_name == "float32":
                return raw
        out = self.scratch(name, rows, np.float32, worker)
        return widen(raw, out, self.dtype_name)

    def write_rows(
        self,
        name: str,
        indices: np.ndarray | None,
        start: int,
        end: int,
        values: np.ndarray,
        worker: int,
    ) -> None:
        """Store float32 ``values`` into the rows that ``read_rows`` returned."""
        storage = self.arrays[name]
        rows = end - start
        if indices is None and self.dtype_name == "float32":
            return  # ``values`` is a view of the storage, already updated in place
        scratch = None
        if self.dtype_name == "bfloat16":
            scratch = self.scratch("narrow", rows, np.uint32, worker)
        if indices is None:
            narrow(values, storage[start:end], self.dtype_name, scratch)
        elif self.dtype_name == "float32":
            storage[indices[start:end]] = values
        else:
            raw = self.scratch(f"{name}-raw", rows, storage.dtype.type, worker)
            narrow(values, raw, self.dtype_name, scratch)
            storage[indices[start:end]] = raw
