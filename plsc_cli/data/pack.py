"""Pack a ``label.txt`` dataset or a folder per identity into RecordIO.

The output is the InsightFace layout that ``scan_recordio`` and MXNet read.
Record 0 is a header with labels [image end, identity end]. Records 1..N are
the images sorted by class, each with a scalar float label and the file bytes
as they are. One identity record per class follows, with labels [first, end)
of its image keys. ``property`` contains ``num_classes,height,width`` of the
most common image size; a warning counts the images of other sizes.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.data.extract import class_count_summary
from plsc_cli.data.fileio import temp_path_for, write_text_atomic
from plsc_cli.data.image import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    decode_image_bgr,
    encode_jpeg,
    image_extension,
)
from plsc_cli.data.label_file import read_label_file
from plsc_cli.data.recordio import RecordIOWriter, pack_payload
from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)

CLASSES_FILE = "classes.txt"
# Header and identity records store record keys as float32 labels, which are
# exact up to 2**24.
FLOAT32_EXACT_MAX = 2**24


@dataclass(frozen=True)
class PackInput:
    """Images to pack, their integer labels and the class names if known."""

    paths: list[Path]
    labels: np.ndarray  # int64
    num_classes: int
    class_names: list[str] | None


def images_from_label_file(label_file: Path, image_dir: Path) -> PackInput:
    """Read ``label_file``; relative image paths resolve against ``image_dir``."""
    dataset = read_label_file(label_file, root=image_dir)
    return PackInput(dataset.paths, dataset.labels, dataset.num_classes, None)


def images_from_folders(image_dir: Path) -> PackInput:
    """Label one subfolder per identity, in sorted name order, from 0."""
    if not image_dir.is_dir():
        raise PlscError(f"image folder not found: {image_dir}")
    folders = sorted(p for p in image_dir.iterdir() if p.is_dir())
    if not folders:
        raise PlscError(
            f"{image_dir}: no identity subfolders found; put each identity's "
            "images in its own folder, or pass --label-file"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            logger.warning("%s: no images; class %d stays empty", folder, label)
        paths.extend(p.resolve() for p in files)
        labels.extend([label] * len(files))
    if not paths:
        raise PlscError(f"{image_dir}: the identity folders hold no image files")
    return PackInput(
        paths,
        np.asarray(labels, dtype=np.int64),
        len(folders),
        [f.name for f in folders],
    )


def _read_image_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlscError(f"cannot read {path}: {exc.strerror}") from None
    try:
        image_extension(data)
    except ImageDecodeError as exc:
        raise PlscError(f"{path}: {exc}") from None
    return data


def _decode(data: bytes, path: Path) -> np.ndarray:
    """Decode the image ``data`` read from ``path`` to uint8 HxWx3 BGR."""
    try:
        return decode_image_bgr(data)
    except ImageDecodeError as exc:
        raise PlscError(f"{path}: {exc}") from None


def _resize_jpeg(image_bgr: np.ndarray, image_size: int) -> bytes:
    """Resize to ``image_size`` squared (bilinear) and encode as JPEG quality 100."""
    import cv2

    resized = cv2.resize(
        image_bgr, (image_size, image_size), interpolation=cv2.INTER_LINEAR
    )
    return encode_jpeg(resized)


def _common_size(sizes: Counter[tuple[int, int]]) -> tuple[int, int]:
    """Return the most common (height, width) and warn about the other sizes."""
    (height, width), count = sizes.most_common(1)[0]
    others = sum(sizes.values()) - count
    if others:
        logger.warning(
            "%d of %d images are not %dx%d (height x width), the most common size; "
            "property records %dx%d, the images are packed unchanged, and training "
            "resizes every image to 112x112; pass --image-size to resize them here",
            others,
            others + count,
            height,
            width,
            height,
            width,
        )
    return height, width


def write_insightface_recordio(
    output_dir: Path,
    images: PackInput,
    progress: Callable[[int], None] | None = None,
    image_size: int | None = None,
) -> None:
    """Write ``train.rec``, ``train.idx`` and ``property`` into ``output_dir``.

    With ``image_size``, each image is resized to ``image_size`` squared and
    stored as JPEG quality 100; otherwise the file bytes are stored unchanged.
    """
    if len(images.paths) + images.num_classes + 1 > FLOAT32_EXACT_MAX:
        raise PlscError(
            f"{len(images.paths)} images and {images.num_classes} classes need "
            f"record keys above {FLOAT32_EXACT_MAX}, which the float32 labels of the "
            "InsightFace header cannot store exactly; split the dataset"
        )
    order = np.argsort(images.labels, kind="stable")
    labels = images.labels[order]
    image_end = len(order) + 1
    identity_end = image_end + images.num_classes
    # Image keys of class c are [starts[c], starts[c + 1]).
    starts = 1 + np.searchsorted(labels, np.arange(images.num_classes + 1))

    rec_path = output_dir / "train.rec"
    idx_path = output_dir / "train.idx"
    rec_temp, idx_temp = temp_path_for(rec_path), temp_path_for(idx_path)
    sizes: Counter[tuple[int, int]] = Counter()
    try:
        with RecordIOWriter(rec_temp, idx_temp) as writer:
            writer.write(0, pack_payload([image_end, identity_end], b""))
            for key, i in enumerate(order.tolist(), 1):
                data = _read_image_file(images.paths[i])
                image = _decode(data, images.paths[i])
                if image_size is not None:
                    data = _resize_jpeg(image, image_size)
                    sizes[(image_size, image_size)] += 1
                else:
                    sizes[(image.shape[0], image.shape[1])] += 1
                writer.write(key, pack_payload(float(labels[key - 1]), data, id=key))
                if progress is not None:
                    progress(1)
            for class_id in range(images.num_classes):
                key = image_end + class_id
                first, end = int(starts[class_id]), int(starts[class_id + 1])
                writer.write(key, pack_payload([first, end], b"", id=key))
        os.replace(rec_temp, rec_path)
        os.replace(idx_temp, idx_path)
    finally:
        rec_temp.unlink(missing_ok=True)
        idx_temp.unlink(missing_ok=True)

    height, width = _common_size(sizes)
    write_text_atomic(
        output_dir / "property", f"{images.num_classes},{height},{width}\n"
    )


def pack_dataset(
    image_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    label_file: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Pack images into InsightFace-layout RecordIO and return a summary.

    With ``label_file``, images and labels come from it, and its relative paths
    resolve against ``image_dir``. Without it, each subfolder of ``image_dir``
    is one identity, and ``classes.txt`` (``label<TAB>folder name``) is written.
    """
    image_dir = Path(image_dir)
    output_dir = Path(output_dir)
    if label_file is not None:
        images = images_from_label_file(Path(label_file), image_dir)
    else:
        images = images_from_folders(image_dir)
    if on_start is not None:
        on_start(len(images.paths))

    output_dir.mkdir(parents=True, exist_ok=True)
    write_insightface_recordio(output_dir, images, progress, image_size)
    if images.class_names is not None:
        lines = [f"{i}\t{name}\n" for i, name in enumerate(images.class_names)]
        write_text_atomic(output_dir / CLASSES_FILE, "".join(lines))
    return {
        **class_count_summary(images.labels),
        "num_classes": images.num_classes,
        "rec_path": str(output_dir / "train.rec"),
    }
