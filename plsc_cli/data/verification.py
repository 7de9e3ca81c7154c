"""Face verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``).

Each file is a pickled ``(bins, issame_list)``: ``bins`` contains 2N encoded images
where entries 2i and 2i+1 form pair i, ``issame_list`` contains N booleans. Entries
are ``bytes`` or uint8 arrays of encoded bytes, and files written by Python 2
occur too. The pickle is read with the restricted unpickler, so a crafted file
cannot run code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from plsc_cli.data.image import ImageDecodeError, decode_image
from plsc_cli.data.safe_pickle import UnsafePickleError, safe_load
from plsc_cli.errors import PlscError

logger = logging.getLogger(__name__)


def load_verification_pickle(path: Path) -> tuple[list[Any], list[Any]]:
    """Load the raw ``(bins, issame_list)`` of a verification set, unchecked."""
    try:
        obj = safe_load(path, encoding="bytes")
    except UnsafePickleError:
        raise
    except PlscError:
        # Python 2 numpy arrays may only load with latin1; bytes stay bytes
        # in that mode except Python 2 str entries, which _entry_bytes encodes.
        obj = safe_load(path, encoding="latin1")
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise PlscError(
            f"{path}: expected a pickled (bins, issame_list) pair, got "
            f"{type(obj).__name__}"
        )
    bins, issame = obj
    if isinstance(issame, np.ndarray):
        issame = issame.tolist()
    if not isinstance(bins, list | tuple) or not isinstance(issame, list | tuple):
        raise PlscError(
            f"{path}: expected bins and issame_list to be lists, got "
            f"{type(bins).__name__} and {type(issame).__name__}"
        )
    if len(bins) != 2 * len(issame):
        raise PlscError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a verification set "
            "contains two images per pair"
        )
    return list(bins), list(issame)


def _entry_bytes(path: Path, index: int, entry: Any) -> bytes:
    if isinstance(entry, bytes | bytearray):
        return bytes(entry)
    # cv2.imencode returns shape (n, 1); other tools write shape (n,).
    if (
        isinstance(entry, np.ndarray)
        and entry.dtype == np.uint8
        and entry.size == max(entry.shape, default=0)
    ):
        return entry.tobytes()
    if isinstance(entry, str):
        # A Python 2 str loaded with encoding="latin1" maps byte i to code point i.
        return entry.encode("latin1")
    raise PlscError(
        f"{path}: image {index} is a {type(entry).__name__}, expected encoded "
        "image bytes or a uint8 array of them"
    )


def load_verification_set(
    path: str | os.PathLike[str], image_size: tuple[int, int] = (112, 112)
) -> tuple[np.ndarray, np.ndarray]:
    """Load a verification set as decoded images and pair labels.

    Returns (uint8 array [2N, H, W, 3] RGB, bool array [N]) where ``image_size``
    is (H, W). Images of another size are resized with bilinear interpolation and
    one warning. Raises :class:`PlscError` naming the file (and the image index)
    for a missing, unsafe, malformed or undecodable file.
    """
    import cv2

    path = Path(path)
    bins, issame = load_verification_pickle(path)
    height, width = image_size
    images = np.empty((len(bins), height, width, 3), dtype=np.uint8)
    resized = 0
    for index, entry in enumerate(bins):
        try:
            image = decode_image(_entry_bytes(path, index, entry))
        except ImageDecodeError as exc:
            raise PlscError(f"{path}: image {index}: {exc}") from None
        if image.shape[:2] != (height, width):
            if resized == 0:
                first_shape = image.shape[:2]
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
            resized += 1
        images[index] = image
    if resized:
        logger.warning(
            "%s: resized %d of %d images to %dx%d (the first was %dx%d)",
            path,
            resized,
            len(bins),
            height,
            width,
            *first_shape,
        )
    return images, np.asarray([bool(x) for x in issame], dtype=bool)
