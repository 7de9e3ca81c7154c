"""Encoded image bytes: format detection, decoding to RGB and JPEG encoding.

OpenCV is imported inside the functions so that importing this module stays
cheap for the CLI.
"""

from __future__ import annotations

import numpy as np

from plsc_cli.errors import PlscError

# File signatures (magic numbers) of the formats OpenCV decodes, longest first
# where one is a prefix of another.
_SIGNATURES: list[tuple[bytes, str]] = [
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
]
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)


class ImageDecodeError(PlscError, ValueError):
    """Bytes that are not an image in a known format, or that fail to decode."""


def image_extension(data: bytes) -> str:
    """Return the file extension that matches the format of encoded image bytes.

    Detection reads the file signature only: '.jpg', '.png', '.bmp', '.gif',
    '.tif' or '.webp'. Raises :class:`ImageDecodeError` for anything else.
    """
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    for signature, extension in _SIGNATURES:
        if head.startswith(signature):
            return extension
    raise ImageDecodeError(
        f"unknown image format ({len(data)} bytes starting with {head[:8].hex()}); "
        "expected JPEG, PNG, BMP, GIF, TIFF or WebP"
    )


def decode_image_bgr(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to a uint8 HxWx3 BGR array (OpenCV order)."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        head = bytes(data[:8]).hex()
        raise ImageDecodeError(
            f"cannot decode image ({len(data)} bytes starting with {head})"
        )
    return image


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to a uint8 HxWx3 RGB array.

    Grayscale images get three equal channels and an alpha channel is dropped.
    Raises :class:`ImageDecodeError` when OpenCV cannot decode the bytes.
    """
    import cv2

    return cv2.cvtColor(decode_image_bgr(data), cv2.COLOR_BGR2RGB)


def encode_jpeg(image_bgr: np.ndarray, quality: int = 100) -> bytes:
    """Encode a uint8 HxWx3 BGR array as JPEG at ``quality`` (0-100)."""
    import cv2

    ok, encoded = cv2.imencode(
        ".jpg", image_bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    )
    if not ok:
        raise ImageDecodeError(f"OpenCV failed to encode a {image_bgr.shape} image")
    return encoded.tobytes()
