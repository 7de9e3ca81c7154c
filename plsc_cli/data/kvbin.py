"""Per-image kv ``.bin`` files, the format of the original PLSC image tools.

Layout: uint32 key length (little endian), the key as UTF-8, uint32 value
length, then the value: the raw image file bytes, pickled. The key is the image
file name. Values are read back with the restricted unpickler, so a crafted file
cannot run code.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np

from plsc_cli.data.fileio import write_bytes_atomic
from plsc_cli.data.safe_pickle import safe_load
from plsc_cli.errors import PlscError

_LENGTH = struct.Struct("<I")
# Protocol 4 is the default of Python 3.8 to 3.13 and loads on every Python 3.
PICKLE_PROTOCOL = 4


def encode_kv_bin(key: str, value: bytes) -> bytes:
    """Return the kv ``.bin`` file content for ``key`` and raw file bytes."""
    key_bytes = key.encode("utf-8")
    pickled = pickle.dumps(bytes(value), protocol=PICKLE_PROTOCOL)
    return b"".join(
        [_LENGTH.pack(len(key_bytes)), key_bytes, _LENGTH.pack(len(pickled)), pickled]
    )


def write_kv_bin(path: str | os.PathLike[str], key: str, value: bytes) -> None:
    """Write one kv ``.bin`` file; a temporary file is renamed into place."""
    write_bytes_atomic(Path(path), encode_kv_bin(key, value))


def read_kv_bin(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    """Read a kv ``.bin`` file and return (key, raw file bytes).

    Raises :class:`PlscError` naming the file when it is truncated, has an
    invalid key, or its value is not a pickled byte string or uint8 array.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PlscError(f"kv .bin file not found: {path}") from None
    if len(data) < _LENGTH.size:
        raise PlscError(f"{path}: file of {len(data)} bytes is too short for a kv .bin")
    (key_length,) = _LENGTH.unpack_from(data, 0)
    value_start = _LENGTH.size + key_length + _LENGTH.size
    if value_start > len(data):
        raise PlscError(
            f"{path}: key length {key_length} runs past the end of the file "
            f"({len(data)} bytes); the file is truncated or not a kv .bin"
        )
    try:
        key = data[_LENGTH.size : _LENGTH.size + key_length].decode("utf-8")
    except UnicodeDecodeError:
        raise PlscError(f"{path}: the key is not valid UTF-8") from None
    (value_length,) = _LENGTH.unpack_from(data, value_start - _LENGTH.size)
    if value_start + value_length > len(data):
        raise PlscError(
            f"{path}: value length {value_length} runs past the end of the file "
            f"({len(data)} bytes); the file is truncated"
        )
    value = safe_load(data[value_start : value_start + value_length], name=str(path))
    if isinstance(value, bytes | bytearray):
        return key, bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:
        return key, value.tobytes()
    raise PlscError(
        f"{path}: value is a pickled {type(value).__name__}, expected the image "
        "file bytes"
    )
