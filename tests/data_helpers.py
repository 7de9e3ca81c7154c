"""Builders for small image datasets that tests write with the project's code."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from plsc_cli.data.recordio import RecordIOWriter, pack_payload


def make_image(seed: int, size: int = 112) -> np.ndarray:
    """Return a smooth random uint8 BGR image, so that JPEG keeps it close."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def jpeg_bytes(seed: int, size: int = 112, quality: int = 95) -> bytes:
    ok, data = cv2.imencode(
        ".jpg", make_image(seed, size), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return data.tobytes()


def png_bytes(seed: int, size: int = 112) -> bytes:
    ok, data = cv2.imencode(".png", make_image(seed, size))
    assert ok
    return data.tobytes()


def write_im2rec(
    folder: Path, records: list[tuple[int, float | list[float], bytes]]
) -> Path:
    """Write (key, label, image bytes) records without a header record, as im2rec."""
    folder.mkdir(parents=True, exist_ok=True)
    with RecordIOWriter(folder / "train.rec", folder / "train.idx") as writer:
        for key, label, image in records:
            writer.write(key, pack_payload(label, image, id=key))
    return folder


def py2_pickle(bins: list[bytes | np.ndarray], issame: list[bool]) -> bytes:
    """Build a protocol 2 pickle the way Python 2 writes it, opcode by opcode.

    Python 2 ``str`` is written with SHORT_BINSTRING/BINSTRING, and numpy arrays
    name ``numpy.core.multiarray`` and carry their data as a ``str``.
    """

    def binstring(data: bytes) -> bytes:
        if len(data) < 256:
            return b"U" + bytes([len(data)]) + data
        return b"T" + struct.pack("<i", len(data)) + data

    def int4(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)

    def array(values: np.ndarray) -> bytes:
        dtype = (
            b"cnumpy\ndtype\n"
            + binstring(b"u1")
            + int4(0)
            + int4(1)
            + b"\x87R"  # TUPLE3, REDUCE
            + b"("
            + int4(3)
            + binstring(b"|")
            + b"NNN"
            + int4(-1)
            + int4(-1)
            + int4(0)
            + b"tb"  # TUPLE, BUILD
        )
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n"
            + b"cnumpy\nndarray\n"
            + int4(0)
            + b"\x85"  # TUPLE1
            + binstring(b"b")
            + b"\x87R"
            + b"("
            + int4(1)
            + int4(len(values))
            + b"\x85"
            + dtype
            + b"\x89"  # NEWFALSE: not Fortran order
            + binstring(values.tobytes())
            + b"tb"
        )

    out = b"\x80\x02]("
    for entry in bins:
        out += array(entry) if isinstance(entry, np.ndarray) else binstring(entry)
    out += b"e]("
    out += b"".join(b"\x88" if same else b"\x89" for same in issame)
    out += b"e\x86."
    return out
