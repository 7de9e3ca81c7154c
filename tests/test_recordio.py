"""Native RecordIO: byte layout, both dataset layouts and corrupt files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from plsc_cli.data.recordio import (
    LAYOUT_IM2REC,
    LAYOUT_INSIGHTFACE,
    MAGIC,
    RecordIOReader,
    RecordIOWriter,
    pack_payload,
    scan_recordio,
    unpack_payload,
)
from plsc_cli.errors import PlscError
from tests.conftest import shared_path
from tests.data_helpers import jpeg_bytes, png_bytes, write_im2rec

FRIENDS_COUNTS = [41, 44, 41, 40, 39, 40]


def parse_records(data: bytes) -> list[tuple[int, bytes]]:
    """Parse a whole .rec byte string with struct alone: (offset, chunk) pairs."""
    records = []
    offset = 0
    while offset < len(data):
        magic, lrec = struct.unpack_from("<II", data, offset)
        assert magic == MAGIC
        length = lrec & ((1 << 29) - 1)
        records.append((offset, lrec >> 29, data[offset + 8 : offset + 8 + length]))
        offset += 8 + length + (-length % 4)
    return records


def test_writer_byte_layout(tmp_path: Path) -> None:
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(7, b"abcde")
        writer.write(9, b"xyz\x00")
    records = parse_records((tmp_path / "a.rec").read_bytes())
    assert [(o, c, p) for o, c, p in records] == [(0, 0, b"abcde"), (16, 0, b"xyz\x00")]
    assert (tmp_path / "a.idx").read_text() == "7\t0\n9\t16\n"


def test_payload_with_magic_round_trip(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    payload = b"head" + magic + b"middle" + magic + b"tail!"
    with RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx") as writer:
        writer.write(0, payload)
    chunks = parse_records((tmp_path / "a.rec").read_bytes())
    assert [c for _, c, _ in chunks] == [1, 2, 3]
    with RecordIOReader(tmp_path / "a.rec", tmp_path / "a.idx") as reader:
        assert reader.read(0) == payload


def test_payload_header_layout() -> None:
    payload = pack_payload([3.0, 8.0], b"IMG", id=5, id2=6)
    assert payload[:24] == struct.pack("<IfQQ", 2, 0.0, 5, 6)
    assert np.frombuffer(payload[24:32], "<f4").tolist() == [3.0, 8.0]
    header, image = unpack_payload(payload)
    assert header.flag == 2
    assert header.label.tolist() == [3.0, 8.0]
    assert image == b"IMG"
    header, image = unpack_payload(pack_payload(4, b"X"))
    assert header.flag == 0
    assert header.label.tolist() == [4.0]


def test_scan_friends112_insightface() -> None:
    root = shared_path("data", "rec", "friends112")
    index = scan_recordio(root)
    assert index.layout == LAYOUT_INSIGHTFACE
    assert len(index) == 245
    assert index.num_classes == 6
    assert index.keys.tolist() == list(range(1, 246))
    assert np.bincount(index.labels).tolist() == FRIENDS_COUNTS
    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        for key, label in zip(index.keys.tolist(), index.labels.tolist(), strict=True):
            header, image = unpack_payload(reader.read(key))
            assert header.label[0] == label, f"record {key}"
            assert reader.read_header(key).id == header.id
            assert image[:3] == b"\xff\xd8\xff"


def test_read_header_matches_full_read() -> None:
    root = shared_path("data", "rec", "friends112")
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        for key in reader.keys:
            expected, _ = unpack_payload(reader.read(key))
            header = reader.read_header(key)
            assert header.flag == expected.flag
            assert header.label.tolist() == expected.label.tolist()
            assert (header.id, header.id2) == (expected.id, expected.id2)


def test_scan_im2rec_sparse_keys(tmp_path: Path) -> None:
    records = [
        (10, [2.0, 0.5], png_bytes(0)),
        (3, 0.0, jpeg_bytes(1)),
        (500, [1.0, 7.0, 9.0], png_bytes(2)),
        (0, [2.0, 3.0], jpeg_bytes(3)),
    ]
    index = scan_recordio(write_im2rec(tmp_path / "ds", records))
    assert index.layout == LAYOUT_IM2REC
    assert index.keys.tolist() == [10, 3, 500, 0]
    assert index.labels.tolist() == [2, 0, 1, 2]
    assert index.num_classes == 3


def test_scan_rejects_fractional_label(tmp_path: Path) -> None:
    root = write_im2rec(tmp_path / "ds", [(1, 0.5, jpeg_bytes(0))])
    with pytest.raises(PlscError, match=r"train.rec: record 1: label 0.5"):
        scan_recordio(root)


def test_reader_lookup_and_offsets(tmp_path: Path) -> None:
    root = write_im2rec(
        tmp_path / "ds", [(k, 0.0, b"\xff\xd8\xff" * k) for k in (5, 2, 9)]
    )
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        assert reader.keys == [5, 2, 9]
        assert 2 in reader
        assert 3 not in reader
        assert reader.offsets_of(np.array([9, 3, 5])).tolist() == [
            reader.index[9],
            -1,
            0,
        ]
        with pytest.raises(PlscError, match="no record with key 3"):
            reader.read(3)


def _friends_copy(tmp_path: Path) -> Path:
    source = shared_path("data", "rec", "friends112")
    folder = tmp_path / "rec"
    folder.mkdir()
    for name in ("train.rec", "train.idx", "property"):
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


def test_truncated_rec_names_record(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    data = (folder / "train.rec").read_bytes()
    (folder / "train.rec").write_bytes(data[: len(data) - 3000])
    with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
        with pytest.raises(PlscError, match=r"train.rec: record 245 at byte \d+: "):
            for key in reader.keys:
                reader.read(key)


def test_bad_magic_names_record(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
        offset = reader.offset(5)
    data = bytearray((folder / "train.rec").read_bytes())
    data[offset : offset + 4] = b"\x00\x01\x02\x03"
    (folder / "train.rec").write_bytes(bytes(data))
    with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
        with pytest.raises(PlscError, match=r"record 5 at byte \d+: bad magic"):
            reader.read(5)


def test_offset_past_end_names_record(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    lines = (folder / "train.idx").read_text().splitlines()
    lines[7] = "7\t99999999"
    (folder / "train.idx").write_text("\n".join(lines) + "\n")
    with RecordIOReader(folder / "train.rec", folder / "train.idx") as reader:
        with pytest.raises(
            PlscError, match=r"record 7 at byte 99999999: offset is past"
        ):
            reader.read(7)


def test_missing_idx_names_file(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    (folder / "train.idx").unlink()
    with pytest.raises(PlscError, match=r"index file not found: .*train.idx"):
        scan_recordio(folder)


def test_bad_idx_line_names_line(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    with (folder / "train.idx").open("a") as f:
        f.write("300\tnot-a-number\n")
    with pytest.raises(PlscError, match=r"train.idx:253: expected 'key<TAB>offset'"):
        scan_recordio(folder)


def test_duplicate_idx_key_names_line(tmp_path: Path) -> None:
    folder = _friends_copy(tmp_path)
    with (folder / "train.idx").open("a") as f:
        f.write("4\t0\n")
    with pytest.raises(PlscError, match=r"train.idx:253: key 4 is listed more"):
        scan_recordio(folder)
