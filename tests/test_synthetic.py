"""Synthetic RecordIO datasets: layout, labels, held-out pairs, learnability."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from plsc_cli.data.recordio import RecordIOReader, scan_recordio, unpack_payload
from plsc_cli.data.synthetic import HELDOUT_PAIRS_FILE, write_synthetic_recordio
from plsc_cli.data.verification import load_verification_set

NUM_CLASSES = 12
IMAGES_PER_CLASS = 8
HELDOUT_PER_CLASS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_recordio(
        tmp_path_factory.mktemp("synthetic"),
        NUM_CLASSES,
        IMAGES_PER_CLASS,
        seed=3,
        heldout_per_class=HELDOUT_PER_CLASS,
    )


def _face_features(image_bgr: np.ndarray) -> np.ndarray:
    # The face sits in the centre and the background changes per image, so
    # keep the central 72x72 pixels, shrink them to 12x12 and standardise each
    # channel to cancel the per-image colour cast.
    centre = image_bgr[20:92, 20:92].astype(np.float32)
    small = cv2.resize(centre, (12, 12), interpolation=cv2.INTER_AREA)
    return (small - small.mean((0, 1))) / (small.std((0, 1)) + 1.0)


def _decode(data: bytes) -> np.ndarray:
    # Decode with OpenCV directly, independent of the project's decoder.
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_scan_counts_and_labels(dataset: Path) -> None:
    index = scan_recordio(dataset)
    num_images = NUM_CLASSES * IMAGES_PER_CLASS
    assert index.layout == "insightface"
    assert index.num_classes == NUM_CLASSES
    assert len(index) == num_images
    np.testing.assert_array_equal(index.keys, np.arange(1, num_images + 1))
    expected = np.repeat(np.arange(NUM_CLASSES), IMAGES_PER_CLASS)
    np.testing.assert_array_equal(index.labels, expected)
    assert (dataset / "property").read_text().strip() == f"{NUM_CLASSES},112,112"


def test_records_match_insightface_layout(dataset: Path) -> None:
    num_images = NUM_CLASSES * IMAGES_PER_CLASS
    with RecordIOReader(dataset / "train.rec", dataset / "train.idx") as reader:
        header, image = unpack_payload(reader.read(0))
        assert header.flag == 2
        assert image == b""
        np.testing.assert_array_equal(
            header.label, [num_images + 1, num_images + 1 + NUM_CLASSES]
        )
        header, image = unpack_payload(reader.read(IMAGES_PER_CLASS + 1))
        assert header.flag == 0
        assert header.label.tolist() == [1.0]
        decoded = _decode(image)
        assert decoded.shape == (112, 112, 3)
        header, _ = unpack_payload(reader.read(num_images + 1 + 2))
        first = 1 + 2 * IMAGES_PER_CLASS
        assert header.label.tolist() == [first, first + IMAGES_PER_CLASS]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_synthetic_recordio(tmp_path / "a", 3, 2, seed=5)
    b = write_synthetic_recordio(tmp_path / "b", 3, 2, seed=5)
    c = write_synthetic_recordio(tmp_path / "c", 3, 2, seed=6)
    assert (a / "train.rec").read_bytes() == (b / "train.rec").read_bytes()
    assert (a / "train.rec").read_bytes() != (c / "train.rec").read_bytes()
    assert not (a / HELDOUT_PAIRS_FILE).exists()


def test_invalid_heldout_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heldout_per_class"):
        write_synthetic_recordio(tmp_path, 3, 2, heldout_per_class=1)


def test_heldout_pairs_balanced(dataset: Path) -> None:
    images, issame = load_verification_set(dataset / HELDOUT_PAIRS_FILE)
    num_genuine = NUM_CLASSES * (HELDOUT_PER_CLASS // 2)
    assert issame.shape == (2 * num_genuine,)
    assert issame.sum() == num_genuine
    assert images.shape == (4 * num_genuine, 112, 112, 3)
    # Both kinds appear in the first half, so k-fold splits see both.
    assert 0 < issame[: len(issame) // 2].sum() < len(issame) // 2


def test_heldout_images_not_in_train(dataset: Path) -> None:
    with (dataset / HELDOUT_PAIRS_FILE).open("rb") as f:
        bins, _ = pickle.load(f)
    index = scan_recordio(dataset)
    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        train = {unpack_payload(reader.read(int(k)))[1] for k in index.keys}
    assert not train & set(bins)


def test_identities_are_learnable(dataset: Path) -> None:
    # A nearest-class-mean classifier on face pixels, fit on the first five
    # images of each identity and scored on the other three, must beat chance
    # (1/12) by a wide margin.
    index = scan_recordio(dataset)
    with RecordIOReader(index.rec_path, index.idx_path) as reader:
        features = np.stack(
            [
                _face_features(_decode(unpack_payload(reader.read(int(k)))[1]))
                for k in index.keys
            ]
        )
    position = np.arange(len(index)) % IMAGES_PER_CLASS
    fit, evaluated = position < 5, position >= 5
    means = np.stack(
        [features[fit & (index.labels == c)].mean(0) for c in range(NUM_CLASSES)]
    )
    distances = ((features[evaluated][:, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    accuracy = (distances.argmin(1) == index.labels[evaluated]).mean()
    assert accuracy > 0.5


def test_heldout_pairs_separable(dataset: Path) -> None:
    # Genuine pairs must be closer in face pixels than impostor pairs: the
    # pair-distance ranking (AUC) is above 0.7, where chance is 0.5.
    images, issame = load_verification_set(dataset / HELDOUT_PAIRS_FILE)
    # load_verification_set returns RGB; the features only need one order.
    features = np.stack([_face_features(image) for image in images])
    distance = ((features[0::2] - features[1::2]) ** 2).sum(axis=(1, 2, 3))
    genuine, impostor = distance[issame], distance[~issame]
    auc = (genuine[:, None] < impostor[None, :]).mean()
    assert auc > 0.7
