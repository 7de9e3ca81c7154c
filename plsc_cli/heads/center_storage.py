"""Row storage for class centers and momentum in float32, float16 or bfloat16.

NumPy has no bfloat16 type, so bfloat16 rows are stored as uint16 bit patterns
(the upper half of the float32 bits) and converted with integer shifts. Rows are
always read and written through float32 buffers: the arithmetic happens in float32,
half precision only saves memory.
"""

from __future__ import annotations

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
    out: np.ndarray, class_start: int, dtype_name: str, seed: int
) -> np.ndarray:
    """Fill ``out`` (rows for classes ``class_start...``) with N(0, INIT_STD^2) centers.

    Row ``c`` gets the same value whatever the shard boundaries are, because every
    block of ``INIT_BLOCK_ROWS`` classes has its own generator seeded by
    ``(seed, block)``.
    """
    num_rows, dim = out.shape
    class_end = class_start + num_rows
    first_block = class_start // INIT_BLOCK_ROWS
    last_block = (class_end - 1) // INIT_BLOCK_ROWS
    scratch = None
    for block in range(first_block, last_block + 1):
        block_start = block * INIT_BLOCK_ROWS
        rng = np.random.default_rng(np.random.SeedSequence([seed, block]))
        values = rng.standard_normal((INIT_BLOCK_ROWS, dim), dtype=np.float32)
        values *= INIT_STD
        low = max(class_start, block_start)
        high = min(class_end, block_start + INIT_BLOCK_ROWS)
        part = values[low - block_start : high - block_start]
        if dtype_name == "bfloat16":
            scratch = np.empty(part.shape, np.uint32)
        narrow(part, out[low - class_start : high - class_start], dtype_name, scratch)
    return out
