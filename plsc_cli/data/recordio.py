"""MXNet RecordIO read and written natively, without importing mxnet.

File layout (``dmlc-core`` recordio, as written by ``mx.recordio``): each record
is the magic ``0xced7230a`` (uint32 little endian), a uint32 whose top 3 bits are
a continuation flag and whose low 29 bits are the payload length, the payload,
then zero padding to a multiple of 4 bytes. ``train.idx`` holds one
``key<TAB>byte offset`` line per record.

An image record's payload starts with the header ``<IfQQ`` (flag, label, id,
id2). When ``flag > 0``, ``flag`` float32 labels follow the header and replace the
scalar label. The encoded image bytes follow.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plsc_cli.errors import PlscError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")


@dataclass(frozen=True)
class RecordHeader:
    """The ``IRHeader`` at the start of an image record's payload."""

    flag: int
    label: np.ndarray  # float32, shape (1,) when flag == 0, else (flag,)
    id: int
    id2: int


def unpack_payload(payload: bytes) -> tuple[RecordHeader, bytes]:
    """Split a record payload into its header and the encoded image bytes."""
    if len(payload) < _HEADER.size:
        raise ValueError(
            f"payload of {len(payload)} bytes is shorter than the "
            f"{_HEADER.size}-byte record header"
        )
    flag, label, id1, id2 = _HEADER.unpack_from(payload, 0)
    offset = _HEADER.size
    if flag > 0:
        end = offset + 4 * flag
        if len(payload) < end:
            raise ValueError(
                f"payload of {len(payload)} bytes is too short for {flag} labels"
            )
        labels = np.frombuffer(payload, dtype="<f4", count=flag, offset=offset)
        labels = labels.astype(np.float32)
        offset = end
    else:
        labels = np.array([label], dtype=np.float32)
    return RecordHeader(flag, labels, id1, id2), payload[offset:]


def pack_payload(
    label: float | np.ndarray | list[float], image: bytes, id: int = 0, id2: int = 0
) -> bytes:
    """Build a record payload: scalar label (flag 0) or a label array (flag = len)."""
    if np.ndim(label) == 0:
        return _HEADER.pack(0, float(np.asarray(label)), id, id2) + image
    labels = np.asarray(label, dtype="<f4").reshape(-1)
    head = _HEADER.pack(len(labels), 0.0, id, id2)
    return head + labels.tobytes() + image


def read_index(idx_path: str | os.PathLike[str]) -> dict[int, int]:
    """Read ``train.idx`` into {key: byte offset}, in file order."""
    path = Path(idx_path)
    if not path.is_file():
        raise PlscError(
            f"index file not found: {path}; RecordIO needs both train.rec and "
            "train.idx (rebuild the index with 'plsc data pack')"
        )
    index: dict[int, int] = {}
    with path.open("r", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                key, offset = int(parts[0]), int(parts[1])
            except (IndexError, ValueError):
                raise PlscError(
                    f"{path}:{line_no}: expected 'key<TAB>offset', got {line.strip()!r}"
                ) from None
            index[key] = offset
    return index


class RecordIOReader:
    """Random access to the records of a ``.rec`` file through its ``.idx``.

    Safe to use after ``fork``: the file is reopened in each process on first use.
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]
    ) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise PlscError(f"RecordIO file not found: {self.rec_path}")
        self.index = read_index(self.idx_path)
        self.size = self.rec_path.stat().st_size
        self._file = None
        self._pid = -1

    @property
    def keys(self) -> list[int]:
        return list(self.index)

    def _handle(self):  # noqa: ANN202 - a binary file object
        if self._file is None or self._pid != os.getpid():
            self._file = self.rec_path.open("rb")
            self._pid = os.getpid()
        return self._file

    def read_at(self, offset: int, key: int | None = None) -> bytes:
        """Read the payload of the record that starts at byte ``offset``."""
        where = f"{self.rec_path}: record {key} at byte {offset}"
        if offset < 0 or offset + 8 > self.size:
            raise PlscError(
                f"{where}: offset is past the end of the file ({self.size} bytes); "
                "the .idx does not belong to this .rec or the .rec is truncated"
            )
        f = self._handle()
        f.seek(offset)
        parts: list[bytes] = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise PlscError(
                    f"{where}: file ends inside a record header (truncated)"
                )
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise PlscError(
                    f"{where}: bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                    "the file is not RecordIO or the .idx offsets are wrong"
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            data = f.read(length)
            if len(data) < length:
                raise PlscError(
                    f"{where}: file ends inside a record of {length} bytes (truncated)"
                )
            f.read((4 - length % 4) % 4)
            parts.append(data)
            # dmlc splits payloads that contain the magic: cflag 1 starts, 2 continues,
            # 3 ends; the magic itself is re-inserted between the parts.
            if cflag in (0, 3):
                break
            parts.append(_MAGIC_BYTES)
        return b"".join(parts)

    def read(self, key: int) -> bytes:
        """Read the payload of the record with ``key``."""
        try:
            offset = self.index[key]
        except KeyError:
            raise PlscError(f"{self.idx_path}: no record with key {key}") from None
        return self.read_at(offset, key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = -1
        return state


class RecordIOWriter:
    """Append records to a ``.rec`` file and their offsets to a ``.idx`` file."""

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]
    ) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        self._rec = self.rec_path.open("wb")
        self._idx = self.idx_path.open("w", encoding="utf-8")

    def write(self, key: int, payload: bytes) -> None:
        offset = self._rec.tell()
        # Split on embedded magic words the way dmlc-core does, so that readers
        # that scan for the magic stay in sync.
        chunks = payload.split(_MAGIC_BYTES)
        for i, chunk in enumerate(chunks):
            if len(chunks) == 1:
                cflag = 0
            elif i == 0:
                cflag = 1
            elif i == len(chunks) - 1:
                cflag = 3
            else:
                cflag = 2
            if len(chunk) > _LENGTH_MASK:
                raise ValueError(f"record {key} is larger than 2^29 - 1 bytes")
            self._rec.write(struct.pack("<II", MAGIC, (cflag << 29) | len(chunk)))
            self._rec.write(chunk)
            self._rec.write(b"\x00" * ((4 - len(chunk) % 4) % 4))
        self._idx.write(f"{key}\t{offset}\n")

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
