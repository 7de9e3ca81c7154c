"""Verification set loading: real files, Python 2 pickles, resizing."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from plsc_cli.data.verification import load_verification_set
from plsc_cli.errors import PlscError
from tests.conftest import shared_path
from tests.data_helpers import jpeg_bytes, make_image, py2_pickle


def decode_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return bgr[:, :, ::-1]


def test_small_lfw_uint8_arrays() -> None:
    path = shared_path("data", "verification", "small_lfw.bin")
    images, issame = load_verification_set(path)
    assert images.shape == (20, 112, 112, 3)
    assert images.dtype == np.uint8
    assert issame.dtype == np.bool_
    assert issame.tolist() == [True] * 10
    with path.open("rb") as f:
        bins, _ = pickle.load(f)  # the file is trusted here: it is the reference
    assert np.array_equal(images[3], decode_rgb(bins[3].tobytes()))


def test_friends_pairs_bytes() -> None:
    path = shared_path("data", "verification", "friends_pairs.bin")
    images, issame = load_verification_set(path)
    assert images.shape == (600, 112, 112, 3)
    assert issame.shape == (300,)
    assert int(issame.sum()) == 150
    with path.open("rb") as f:
        bins, _ = pickle.load(f)
    assert np.array_equal(images[599], decode_rgb(bins[599]))


def test_python2_pickle(tmp_path: Path) -> None:
    first, second = jpeg_bytes(1), jpeg_bytes(2)
    path = tmp_path / "py2.bin"
    path.write_bytes(py2_pickle([first, np.frombuffer(second, np.uint8)], [True]))
    images, issame = load_verification_set(path)
    assert np.array_equal(images[0], decode_rgb(first))
    assert np.array_equal(images[1], decode_rgb(second))
    assert issame.tolist() == [True]


def test_rgb_channel_order(tmp_path: Path) -> None:
    red_bgr = np.zeros((112, 112, 3), np.uint8)
    red_bgr[:, :, 2] = 255
    png = cv2.imencode(".png", red_bgr)[1].tobytes()
    path = tmp_path / "red.bin"
    path.write_bytes(pickle.dumps(([png, png], [False])))
    images, _ = load_verification_set(path)
    assert images[0, 0, 0].tolist() == [255, 0, 0]


def test_other_size_resized_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    big = cv2.imencode(".png", make_image(0, size=150))[1].tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(pickle.dumps(([big, jpeg_bytes(1)], [True])))
    logger = logging.getLogger("plsc_cli")
    logger.addHandler(caplog.handler)
    try:
        images, _ = load_verification_set(path)
    finally:
        logger.removeHandler(caplog.handler)
    assert images.shape == (2, 112, 112, 3)
    expected = cv2.resize(make_image(0, size=150), (112, 112))[:, :, ::-1]
    assert np.array_equal(images[0], expected)
    assert "resized 1 of 2 images to 112x112 (the first was 150x150)" in caplog.text


def test_custom_size(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    path.write_bytes(pickle.dumps(([jpeg_bytes(0), jpeg_bytes(1)], [True])))
    images, _ = load_verification_set(path, image_size=(64, 48))
    assert images.shape == (2, 64, 48, 3)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"bins": []}, "expected a pickled \\(bins, issame_list\\) pair"),
        (([b"x"], [True]), "2 images for 1 pairs|1 images for 1 pairs"),
        (([b"not an image", b"x"], [True]), "image 0: cannot decode image"),
        (([3, b"x"], [True]), "image 0 is a int"),
    ],
    ids=["dict", "count", "undecodable", "wrong-type"],
)
def test_malformed_sets(tmp_path: Path, obj: object, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(PlscError, match=f"bad.bin: .*({message})"):
        load_verification_set(path)
