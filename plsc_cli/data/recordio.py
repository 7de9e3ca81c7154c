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
from collections.abc import Callable
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


def _index_not_found(path: Path) -> PlscError:
    return PlscError(
        f"index file not found: {path}; RecordIO needs both the .rec file and its "
        ".idx (key<TAB>byte offset per record), so copy the .idx from the same "
        "dataset download"
    )


def _parse_index_lines(path: Path) -> tuple[list[int], list[int]]:
    keys: list[int] = []
    offsets: list[int] = []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                key, offset = int(parts[0]), int(parts[1])
            except ValueError:
                raise PlscError(
                    f"{path}:{line_no}: expected 'key<TAB>offset', got {line.strip()!r}"
                ) from None
            keys.append(key)
            offsets.append(offset)
    return keys, offsets


def read_index_arrays(
    idx_path: str | os.PathLike[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``train.idx`` into (keys, byte offsets), int64 arrays in file order.

    Raises :class:`PlscError` with the line number for a malformed line and for
    a key listed twice.
    """
    path = Path(idx_path)
    if not path.is_file():
        raise _index_not_found(path)
    tokens = path.read_bytes().split()
    table: np.ndarray | None = None
    if len(tokens) % 2 == 0:
        try:
            table = np.array(tokens).astype(np.int64).reshape(-1, 2)
        except ValueError:
            table = None
    if table is None:
        # The fast path failed: parse line by line to report the bad line.
        keys, offsets = _parse_index_lines(path)
        table = np.array([keys, offsets], dtype=np.int64).T.reshape(-1, 2)
    keys_array = np.ascontiguousarray(table[:, 0])
    offsets_array = np.ascontiguousarray(table[:, 1])
    unique, counts = np.unique(keys_array, return_counts=True)
    if len(unique) != len(keys_array):
        duplicate = int(unique[np.argmax(counts > 1)])
        line_no = int(np.flatnonzero(keys_array == duplicate)[1]) + 1
        raise PlscError(
            f"{path}:{line_no}: key {duplicate} is listed more than once; "
            "each record needs a unique key"
        )
    return keys_array, offsets_array


def read_index(idx_path: str | os.PathLike[str]) -> dict[int, int]:
    """Read ``train.idx`` into {key: byte offset}, in file order."""
    keys, offsets = read_index_arrays(idx_path)
    return dict(zip(keys.tolist(), offsets.tolist(), strict=True))


class RecordIOReader:
    """Random access to the records of a ``.rec`` file through its ``.idx``.

    Safe to use after ``fork``: the file is reopened in each process on first use.
    Keys and offsets are kept in numpy arrays, so a reader for millions of
    records stays small and is cheap to share with worker processes.
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str]
    ) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path)
        if not self.rec_path.is_file():
            raise PlscError(f"RecordIO file not found: {self.rec_path}")
        self.key_array, self.offset_array = read_index_arrays(self.idx_path)
        self.size = self.rec_path.stat().st_size
        # Keys are looked up by binary search in a sorted copy.
        self._key_order = np.argsort(self.key_array, kind="stable")
        self._sorted_keys = self.key_array[self._key_order]
        self._file = None
        self._pid = -1

    @property
    def keys(self) -> list[int]:
        """Record keys in ``.idx`` file order."""
        return self.key_array.tolist()

    @property
    def index(self) -> dict[int, int]:
        """{key: byte offset} in file order; built on each access."""
        return dict(
            zip(self.key_array.tolist(), self.offset_array.tolist(), strict=True)
        )

    def __len__(self) -> int:
        return len(self.key_array)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int | np.integer) and self._position(int(key)) >= 0

    def _position(self, key: int) -> int:
        i = int(np.searchsorted(self._sorted_keys, key))
        if i < len(self._sorted_keys) and self._sorted_keys[i] == key:
            return int(self._key_order[i])
        return -1

    def offsets_of(self, keys: np.ndarray) -> np.ndarray:
        """Return the byte offsets of ``keys``, or -1 for keys not in the index."""
        keys = np.asarray(keys, dtype=np.int64)
        i = np.searchsorted(self._sorted_keys, keys)
        i_clipped = np.minimum(i, max(len(self._sorted_keys) - 1, 0))
        if len(self._sorted_keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        found = self._sorted_keys[i_clipped] == keys
        offsets = self.offset_array[self._key_order[i_clipped]]
        return np.where(found, offsets, -1)

    def offset(self, key: int) -> int:
        """Return the byte offset of the record with ``key``."""
        position = self._position(key)
        if position < 0:
            raise PlscError(f"{self.idx_path}: no record with key {key}")
        return int(self.offset_array[position])

    def _handle(self):  # noqa: ANN202 - a binary file object
        if self._file is None or self._pid != os.getpid():
            self._file = self.rec_path.open("rb")
            self._pid = os.getpid()
        return self._file

    def _read_chunk_head(self, where: str) -> tuple[int, int]:
        """Read one chunk's magic and length word; return (cflag, length)."""
        head = self._handle().read(8)
        if len(head) < 8:
            raise PlscError(f"{where}: file ends inside a record header (truncated)")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise PlscError(
                f"{where}: bad magic 0x{magic:08x} (expected 0x{MAGIC:08x}); "
                "the file is not RecordIO or the .idx offsets are wrong"
            )
        return lrec >> 29, lrec & _LENGTH_MASK

    def _seek(self, offset: int, where: str) -> None:
        if offset < 0 or offset + 8 > self.size:
            raise PlscError(
                f"{where}: offset is past the end of the file ({self.size} bytes); "
                "the .idx does not belong to this .rec or the .rec is truncated"
            )
        self._handle().seek(offset)

    def read_at(self, offset: int, key: int | None = None) -> bytes:
        """Read the payload of the record that starts at byte ``offset``."""
        where = f"{self.rec_path}: record {key} at byte {offset}"
        self._seek(offset, where)
        f = self._handle()
        parts: list[bytes] = []
        while True:
            cflag, length = self._read_chunk_head(where)
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
        return self.read_at(self.offset(key), key)

    def read_header(self, key: int) -> RecordHeader:
        """Read only the header (flag, labels, ids) of the record with ``key``.

        Reads a few dozen bytes instead of the whole image, which makes scanning
        the labels of millions of records fast.
        """
        offset = self.offset(key)
        where = f"{self.rec_path}: record {key} at byte {offset}"
        self._seek(offset, where)
        cflag, length = self._read_chunk_head(where)
        if cflag != 0:
            # The payload contains the magic and is split into parts.
            return self._unpack_header(self.read_at(offset, key), where)
        f = self._handle()
        head = f.read(min(length, _HEADER.size))
        expected = min(length, _HEADER.size)
        if len(head) == _HEADER.size:
            flag = _HEADER.unpack_from(head, 0)[0]
            expected = min(length, _HEADER.size + 4 * flag)
            head += f.read(expected - _HEADER.size)
        if len(head) < expected:
            raise PlscError(f"{where}: file ends inside a record (truncated)")
        return self._unpack_header(head, where)

    @staticmethod
    def _unpack_header(payload: bytes, where: str) -> RecordHeader:
        try:
            return unpack_payload(payload)[0]
        except ValueError as exc:
            raise PlscError(f"{where}: {exc}") from None

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


@dataclass(frozen=True)
class RecordIOIndex:
    """The image records of a RecordIO dataset and their class labels."""

    rec_path: Path
    idx_path: Path
    keys: np.ndarray  # int64 keys of the image records, in dataset order
    labels: np.ndarray  # int64 class of each image record
    num_classes: int
    layout: str  # LAYOUT_INSIGHTFACE or LAYOUT_IM2REC

    def __len__(self) -> int:
        return len(self.keys)


LAYOUT_INSIGHTFACE = "insightface"
LAYOUT_IM2REC = "im2rec"


def find_recordio_files(root_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return (``.rec``, ``.idx``) paths for a dataset folder or a ``.rec`` file.

    A folder must hold ``train.rec`` or exactly one ``*.rec``; the index is the
    file of the same name ending in ``.idx``.
    """
    root = Path(root_dir)
    if root.is_file() and root.suffix == ".rec":
        rec_path = root
    elif root.is_dir():
        rec_path = root / "train.rec"
        if not rec_path.is_file():
            candidates = sorted(root.glob("*.rec"))
            if len(candidates) != 1:
                found = ", ".join(p.name for p in candidates) or "none"
                raise PlscError(
                    f"{root}: expected train.rec or exactly one *.rec file, found "
                    f"{found}; pass the folder that contains the dataset"
                )
            rec_path = candidates[0]
    else:
        raise PlscError(f"RecordIO folder not found: {root}")
    idx_path = rec_path.with_suffix(".idx")
    if not idx_path.is_file():
        raise _index_not_found(idx_path)
    return rec_path, idx_path


def record_class(header: RecordHeader, where: str) -> int:
    """Return the class of an image record: its first label, a whole number >= 0."""
    if header.label.size == 0:
        raise PlscError(f"{where}: the record has no label")
    value = float(header.label[0])
    if not value.is_integer() or value < 0:
        raise PlscError(
            f"{where}: label {value} is not a class id (a whole number >= 0)"
        )
    return int(value)


def _is_insightface_header(reader: RecordIOReader) -> bool:
    """Tell whether record 0 is an InsightFace header record.

    The header has flag >= 2, no image bytes, and labels [image end, identity
    end] with image keys 1..image_end-1. An im2rec record 0 is an image.
    """
    if 0 not in reader:
        return False
    header, image = unpack_or_raise(reader, 0)
    if header.flag < 2 or len(image) > 0:
        return False
    image_end, identity_end = float(header.label[0]), float(header.label[1])
    return image_end.is_integer() and identity_end.is_integer() and image_end >= 1


def unpack_or_raise(reader: RecordIOReader, key: int) -> tuple[RecordHeader, bytes]:
    """Read and unpack record ``key``; a malformed payload raises PlscError."""
    payload = reader.read(key)
    try:
        return unpack_payload(payload)
    except ValueError as exc:
        raise PlscError(f"{reader.rec_path}: record {key}: {exc}") from None


def _labels_from_headers(
    reader: RecordIOReader,
    keys: np.ndarray,
    progress: Callable[[int], None] | None,
) -> np.ndarray:
    labels = np.empty(len(keys), dtype=np.int64)
    # Reading in file order turns random seeks into a forward scan.
    order = np.argsort(reader.offsets_of(keys), kind="stable")
    for count, i in enumerate(order, 1):
        key = int(keys[i])
        labels[i] = record_class(
            reader.read_header(key), f"{reader.rec_path}: record {key}"
        )
        if progress is not None and count % 10000 == 0:
            progress(10000)
    if progress is not None:
        progress(len(keys) % 10000)
    return labels


def _labels_from_identity_records(
    reader: RecordIOReader, image_end: int, identity_end: int
) -> np.ndarray:
    """Fill the class of image keys 1..image_end-1 from the identity records.

    Identity record ``image_end + c`` contains the range [first, end) of the image
    keys of class c. The ranges must cover every image key exactly once.
    """
    labels = np.full(image_end - 1, -1, dtype=np.int64)
    for class_id, key in enumerate(range(image_end, identity_end)):
        where = f"{reader.rec_path}: identity record {key}"
        header = reader.read_header(key)
        if header.label.size < 2:
            raise PlscError(
                f"{where}: expected labels [first, end), got {header.label}"
            )
        first, end = int(header.label[0]), int(header.label[1])
        if not 1 <= first <= end <= image_end:
            raise PlscError(
                f"{where}: image key range [{first}, {end}) is outside the image "
                f"keys 1..{image_end - 1}"
            )
        if (labels[first - 1 : end - 1] >= 0).any():
            raise PlscError(
                f"{where}: image key range [{first}, {end}) overlaps another identity"
            )
        labels[first - 1 : end - 1] = class_id
    uncovered = np.flatnonzero(labels < 0)
    if uncovered.size:
        raise PlscError(
            f"{reader.rec_path}: {uncovered.size} image records (first key "
            f"{int(uncovered[0]) + 1}) belong to no identity record"
        )
    return labels


def scan_recordio(
    root_dir: str | os.PathLike[str],
    progress: Callable[[int], None] | None = None,
) -> RecordIOIndex:
    """Find the image records of a RecordIO dataset and their labels.

    Two layouts occur. In the InsightFace layout (MS1M, Glint360K), record 0 is
    a header whose labels give the end of the image keys and of the identity
    records. Labels then come from the identity records, without reading images.
    In the im2rec layout, every record is an image with an arbitrary key and a
    scalar or array label whose first value is the class, so each record header
    is read.
    ``progress`` receives the number of headers read since its last call.
    """
    rec_path, idx_path = find_recordio_files(root_dir)
    with RecordIOReader(rec_path, idx_path) as reader:
        if not _is_insightface_header(reader):
            keys = reader.key_array.copy()
            labels = _labels_from_headers(reader, keys, progress)
            num_classes = int(labels.max()) + 1 if len(labels) else 0
            return RecordIOIndex(
                rec_path, idx_path, keys, labels, num_classes, LAYOUT_IM2REC
            )

        header = reader.read_header(0)
        image_end, identity_end = int(header.label[0]), int(header.label[1])
        keys = np.arange(1, image_end, dtype=np.int64)
        missing = keys[reader.offsets_of(keys) < 0][:10].tolist()
        if missing:
            raise PlscError(
                f"{idx_path}: the header record lists image keys 1..{image_end - 1}, "
                f"but keys {missing} are not in the index"
            )
        if identity_end > image_end:
            labels = _labels_from_identity_records(reader, image_end, identity_end)
            num_classes = identity_end - image_end
        else:
            labels = _labels_from_headers(reader, keys, progress)
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        return RecordIOIndex(
            rec_path, idx_path, keys, labels, num_classes, LAYOUT_INSIGHTFACE
        )
