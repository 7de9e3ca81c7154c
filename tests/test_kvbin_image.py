"""kv .bin files and encoded image helpers."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from plsc_cli.data.image import (
    ImageDecodeError,
    decode_image,
    encode_jpeg,
    image_extension,
)
from plsc_cli.data.kvbin import read_kv_bin, write_kv_bin
from plsc_cli.errors import PlscError
from tests.data_helpers import jpeg_bytes, make_image, png_bytes


def test_kv_bin_layout(tmp_path: Path) -> None:
    value = jpeg_bytes(0)
    write_kv_bin(tmp_path / "a.bin", "näme.jpg", value)
    raw = (tmp_path / "a.bin").read_bytes()
    key = "näme.jpg".encode()
    (key_length,) = struct.unpack_from("<I", raw, 0)
    assert raw[4 : 4 + key_length] == key
    (value_length,) = struct.unpack_from("<I", raw, 4 + key_length)
    assert pickle.loads(raw[8 + key_length :]) == value
    assert len(raw) == 8 + key_length + value_length
    assert read_kv_bin(tmp_path / "a.bin") == ("näme.jpg", value)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_kv_bin_uint8_array_value(tmp_path: Path) -> None:
    value = png_bytes(1)
    pickled = pickle.dumps(np.frombuffer(value, np.uint8))
    (tmp_path / "b.bin").write_bytes(
        struct.pack("<I", 5) + b"b.png" + struct.pack("<I", len(pickled)) + pickled
    )
    assert read_kv_bin(tmp_path / "b.bin") == ("b.png", value)


@pytest.mark.parametrize("cut", [2, 6, 12, -5])
def test_kv_bin_truncated(tmp_path: Path, cut: int) -> None:
    write_kv_bin(tmp_path / "a.bin", "a.jpg", jpeg_bytes(0))
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "a.bin").write_bytes(data[:cut])
    with pytest.raises(PlscError, match=r"a.bin: "):
        read_kv_bin(tmp_path / "a.bin")


def test_image_extension_signatures() -> None:
    image = make_image(0, size=16)
    for extension in [".jpg", ".png", ".bmp", ".tif", ".webp"]:
        data = cv2.imencode(extension, image)[1].tobytes()
        assert image_extension(data) == extension
    assert image_extension(b"GIF89a....") == ".gif"
    with pytest.raises(ImageDecodeError, match="unknown image format"):
        image_extension(b"\x00\x01\x02")


def test_decode_image_rgb() -> None:
    bgr = make_image(3, size=20)
    decoded = decode_image(cv2.imencode(".png", bgr)[1].tobytes())
    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded, bgr[:, :, ::-1])
    gray = cv2.imencode(".png", bgr[:, :, 0])[1].tobytes()
    assert decode_image(gray).shape == (20, 20, 3)
    with pytest.raises(ImageDecodeError, match="cannot decode image"):
        decode_image(b"\xff\xd8\xff broken")


def test_encode_jpeg_quality() -> None:
    bgr = make_image(4)
    best = cv2.imdecode(np.frombuffer(encode_jpeg(bgr, 100), np.uint8), 1)
    low = cv2.imdecode(np.frombuffer(encode_jpeg(bgr, 30), np.uint8), 1)
    error_best = np.abs(best.astype(int) - bgr).mean()
    error_low = np.abs(low.astype(int) - bgr).mean()
    # OpenCV subsamples chroma even at quality 100, so a small error remains.
    assert error_best < 1.5
    assert error_low > error_best
