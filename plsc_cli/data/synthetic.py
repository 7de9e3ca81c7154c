"""Synthetic face-like RecordIO datasets whose identities a network can learn.

Each identity is a smooth random face: an ellipse, two eyes, a mouth and a few
colour blobs, with random colours, sizes and positions. Each image of the
identity places that face, after a random shift, scale and rotation, on a new
random background, sometimes behind an occluding blob, and adds a colour cast,
a brightness change and pixel noise before JPEG encoding. Images of one
identity share only the face, so a model must ignore the rest to tell
identities apart.

The files follow the InsightFace layout that ``scan_recordio`` reads. Record 0
is a header with labels [first identity record key, end). Image records have
keys 1..N and scalar float labels sorted by class. Identity record ``N + 1 + c``
has labels [first image key of class c, end).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plsc_cli.data.image import encode_jpeg
from plsc_cli.data.recordio import RecordIOWriter, pack_payload

HELDOUT_PAIRS_FILE = "heldout_pairs.bin"
JPEG_QUALITY = 90
# Nuisance ranges applied to every image. The shift is a fraction of the side.
MAX_SHIFT = 0.08
SCALE_RANGE = (0.88, 1.12)
MAX_ROTATION_DEG = 12.0
BRIGHTNESS_RANGE = (0.75, 1.25)
CHANNEL_GAIN_RANGE = (0.85, 1.15)
NOISE_STD = 6.0
OCCLUDER_PROBABILITY = 0.3


@dataclass(frozen=True)
class IdentityTemplate:
    """The face of one identity, drawn once and varied for every image."""

    face: np.ndarray  # float32 HxWx3 BGR
    mask: np.ndarray  # float32 HxW, 1 where the face is drawn, 0 elsewhere


def render_template(rng: np.random.Generator, size: int) -> IdentityTemplate:
    """Draw one identity: a face ellipse with blobs, eyes and a mouth."""

    face = np.zeros((size, size, 3), dtype=np.float32)
    mask = np.zeros((size, size), dtype=np.float32)

    def draw(
        center: tuple[float, float],
        axes: tuple[float, float],
        angle: float,
        colour: np.ndarray,
    ) -> None:
        _ellipse(face, center, axes, angle, tuple(float(c) for c in colour))
        _ellipse(mask, center, axes, angle, (1.0,))

    center = (size / 2 + rng.uniform(-0.04, 0.04) * size, size * 0.52)
    axes = (size * rng.uniform(0.26, 0.36), size * rng.uniform(0.34, 0.44))
    draw(center, axes, 0.0, rng.uniform(60, 230, size=3))

    # Blobs on and around the face (hair, marks) with their own colours.
    for _ in range(rng.integers(2, 5)):
        blob_center = (
            center[0] + rng.uniform(-0.7, 0.7) * axes[0],
            center[1] + rng.uniform(-1.0, 0.5) * axes[1],
        )
        blob_axes = (size * rng.uniform(0.05, 0.14), size * rng.uniform(0.04, 0.12))
        draw(blob_center, blob_axes, rng.uniform(0, 180), rng.uniform(0, 255, size=3))

    eye_dx = axes[0] * rng.uniform(0.35, 0.55)
    eye_y = center[1] - axes[1] * rng.uniform(0.1, 0.3)
    eye_axes = (size * rng.uniform(0.04, 0.07), size * rng.uniform(0.025, 0.045))
    eye_colour = rng.uniform(0, 120, size=3)
    for side in (-1, 1):
        draw((center[0] + side * eye_dx, eye_y), eye_axes, 0.0, eye_colour)

    mouth_y = center[1] + axes[1] * rng.uniform(0.35, 0.6)
    mouth_axes = (axes[0] * rng.uniform(0.25, 0.55), size * rng.uniform(0.02, 0.05))
    draw((center[0], mouth_y), mouth_axes, 0.0, rng.uniform(0, 200, size=3))

    return IdentityTemplate(face=face, mask=mask)


def render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw a float32 BGR background: a smooth colour field from a 4x4 upsample."""
    import cv2

    coarse = rng.uniform(20, 235, size=(4, 4, 3)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _ellipse(
    image: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    colour: tuple[float, ...],
) -> None:
    import cv2

    cv2.ellipse(
        image,
        (round(center[0]), round(center[1])),
        (max(1, round(axes[0])), max(1, round(axes[1]))),
        angle,
        0,
        360,
        colour,
        thickness=-1,
        lineType=cv2.LINE_AA,
    )


def vary_template(template: IdentityTemplate, rng: np.random.Generator) -> np.ndarray:
    """Return one uint8 BGR image of an identity with random nuisances.

    The face moves, scales and rotates over a new random background, sometimes
    behind an occluding blob, then gets a colour cast, a brightness change and
    pixel noise.
    """
    import cv2

    size = template.face.shape[0]
    matrix = cv2.getRotationMatrix2D(
        (size / 2, size / 2),
        rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG),
        rng.uniform(*SCALE_RANGE),
    )
    matrix[:, 2] += rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
    face = cv2.warpAffine(template.face, matrix, (size, size))
    mask = cv2.warpAffine(template.mask, matrix, (size, size))[:, :, None]
    image = mask * face + (1.0 - mask) * render_background(rng, size)

    if rng.random() < OCCLUDER_PROBABILITY:
        center = tuple(rng.uniform(0, size, size=2))
        axes = tuple(rng.uniform(0.06, 0.16, size=2) * size)
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        _ellipse(image, center, axes, rng.uniform(0, 180), colour)

    # Soften the drawn edges, like a camera's optics.
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=size / 80)
    image *= rng.uniform(*CHANNEL_GAIN_RANGE, size=3) * rng.uniform(*BRIGHTNESS_RANGE)
    image += rng.normal(0.0, NOISE_STD, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_recordio(
    out_dir: str | os.PathLike[str],
    num_classes: int,
    images_per_class: int,
    seed: int = 0,
    image_size: int = 112,
    heldout_per_class: int = 0,
) -> Path:
    """Write a synthetic dataset to ``out_dir`` and return the folder.

    Writes ``train.rec``, ``train.idx`` and ``property`` (``num_classes,H,W``).
    With ``heldout_per_class >= 2`` it also writes ``heldout_pairs.bin``, a
    verification set of pickled ``(bins, issame_list)`` built from extra images
    of the same identities that are not in ``train.rec``. The same arguments
    always produce the same files.
    """
    if num_classes < 1 or images_per_class < 1:
        raise ValueError(
            f"need at least one class and one image per class, got "
            f"num_classes={num_classes}, images_per_class={images_per_class}"
        )
    if heldout_per_class == 1 or heldout_per_class < 0:
        raise ValueError(
            f"heldout_per_class must be 0 or at least 2 (a genuine pair needs two "
            f"images of one identity), got {heldout_per_class}"
        )
    if heldout_per_class and num_classes < 2:
        raise ValueError("held-out impostor pairs need at least two classes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = [render_template(rng, image_size) for _ in range(num_classes)]

    num_images = num_classes * images_per_class
    identity_start = num_images + 1
    with RecordIOWriter(out / "train.rec", out / "train.idx") as writer:
        writer.write(
            0, pack_payload([identity_start, identity_start + num_classes], b"")
        )
        key = 1
        for label, template in enumerate(templates):
            for _ in range(images_per_class):
                image = encode_jpeg(vary_template(template, rng), JPEG_QUALITY)
                writer.write(key, pack_payload(float(label), image, id=key))
                key += 1
        for label in range(num_classes):
            first = 1 + label * images_per_class
            writer.write(
                identity_start + label,
                pack_payload([first, first + images_per_class], b""),
            )
    (out / "property").write_text(f"{num_classes},{image_size},{image_size}\n")

    if heldout_per_class:
        heldout = [
            [
                encode_jpeg(vary_template(template, rng), JPEG_QUALITY)
                for _ in range(heldout_per_class)
            ]
            for template in templates
        ]
        bins, issame = _verification_pairs(heldout, rng)
        with (out / HELDOUT_PAIRS_FILE).open("wb") as f:
            pickle.dump((bins, issame), f, protocol=4)
    return out


def _verification_pairs(
    heldout: list[list[bytes]], rng: np.random.Generator
) -> tuple[list[bytes], list[bool]]:
    """Pair held-out images: half genuine pairs, half impostor pairs, shuffled.

    Genuine pairs join consecutive images of one identity (images 0-1, 2-3, ...).
    Each impostor pair joins random images of two different identities, so the
    set has as many impostor pairs as genuine ones. The order is shuffled so
    that every fold of a k-fold protocol gets both kinds.
    """
    pairs: list[tuple[bytes, bytes, bool]] = []
    for images in heldout:
        for i in range(0, len(images) - 1, 2):
            pairs.append((images[i], images[i + 1], True))
    num_genuine = len(pairs)
    num_classes = len(heldout)
    per_class = len(heldout[0])
    for _ in range(num_genuine):
        a, b = rng.choice(num_classes, size=2, replace=False)
        i, j = rng.integers(0, per_class, size=2)
        pairs.append((heldout[a][i], heldout[b][j], False))
    order = rng.permutation(len(pairs))
    bins: list[bytes] = []
    issame: list[bool] = []
    for index in order:
        first, second, same = pairs[index]
        bins += [first, second]
        issame.append(same)
    return bins, issame
