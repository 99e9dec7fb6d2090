"""Read an image file of any bit depth and channel layout into uint8 BGR, RGB or L, or refuse it by name.

What each kind of file becomes (PIL's mode on the left):
- 8-bit "L", "RGB", "1" (bilevel), "P" (palette, its transparency included), "LA", "RGBA" (alpha
  dropped, as detectron2 does), "CMYK" (CMYK JPEGs included), "YCbCr", "LAB", "HSV": converted by PIL.
- 16-bit grayscale ("I;16*", and "I" from a PNG, which older PIL gives for 16-bit PNGs): the high
  byte of each value (v >> 8), so an 8-bit image stored at 16 bits (v * 257) reads back exactly.
  (PIL's own conversion saturates: every value above 255 became 255, a white image.) 16-bit RGB(A)
  PNGs are decoded by PIL to their high bytes already, so both kinds agree.
- 32-bit integer or floating-point pixels ("I" from other formats, "F"): refused, naming the file,
  since nothing says which values are black and white.
EXIF orientation is applied as detectron2's ``read_image`` does (its ``_apply_exif_orientation``);
an unreadable EXIF block is ignored. PIL's warnings about a file are logged naming the file.
"""
import logging
import warnings
from typing import Optional

import numpy as np
from PIL import Image

from ..config.errors import UserError

__all__ = ["BadImageError", "IMAGE_FORMATS", "apply_exif_orientation", "read_image"]

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("BGR", "RGB", "L")

_EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the image upright (detectron2's table)
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class BadImageError(UserError, OSError):
    """An image file is missing, unreadable, of an unusable pixel type, or disagrees with its
    annotation; the message names the file."""


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """``image`` turned upright by its EXIF orientation tag (unchanged without a usable tag)."""
    try:
        exif = image.getexif()
    except Exception:  # a broken EXIF block must not make the image unreadable (detectron2 issue 1885)
        return image
    method = _EXIF_TRANSPOSE.get(exif.get(_EXIF_ORIENTATION_TAG)) if exif is not None else None
    return image.transpose(method) if method is not None else image


def _eight_bit(image: Image.Image, file_name: str, file_format: Optional[str]) -> Image.Image:
    """``image`` with 8 bits per channel, in a mode PIL converts to RGB and L without loss of range;
    ``file_format`` is PIL's name of the file's format ("PNG", "JPEG", ...)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and file_format == "PNG"):
        values = np.asarray(image).astype(np.int64)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), mode="L")
    if mode == "I" or mode.startswith("I;") or mode == "F" or mode.startswith("F;"):
        kind = "floating-point" if mode.startswith("F") else "32-bit integer"
        raise BadImageError(
            f"image {file_name} has {kind} pixels (PIL mode {mode}) with no defined black and white: "
            "convert it to 8 or 16 bits per channel"
        )
    if mode == "P" and "transparency" in image.info:
        return image.convert("RGBA")  # PIL warns when such a palette image goes straight to RGB
    return image


def _to_array(image: Image.Image, image_format: str, file_name: str, file_format: Optional[str]) -> np.ndarray:
    image = _eight_bit(image, file_name, file_format)
    if image_format == "L":
        if image.mode not in ("L", "1"):
            image = image.convert("RGB")
        return np.asarray(image.convert("L"))[:, :, None]
    rgb = np.asarray(image.convert("RGB"))
    return rgb[:, :, ::-1] if image_format == "BGR" else rgb


def _log_warnings(caught, file_name: str) -> None:
    for warning in caught:
        logger.warning("%s: %s", file_name, warning.message)


def read_image(file_name: str, image_format: str = "BGR") -> np.ndarray:
    """Read ``file_name`` into a uint8 ``ndarray[H, W, C]`` in ``image_format`` ("BGR", "RGB": C = 3;
    "L": C = 1), upright by its EXIF orientation (see the module docstring for each pixel type).

    Raises ``BadImageError`` naming the file when it is missing, cannot be decoded, or holds pixels
    without a defined range; ``UserError`` for an unknown ``image_format``.
    """
    if image_format not in IMAGE_FORMATS:
        raise UserError(f"unsupported INPUT.FORMAT {image_format!r} (choose from: {', '.join(IMAGE_FORMATS)})")
    caught: Optional[list] = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(file_name) as pil_image:
                pil_image.load()
                upright = apply_exif_orientation(pil_image)
                return _to_array(upright, image_format, file_name, pil_image.format)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(f"image not found: {file_name}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImageError(f"cannot read image {file_name}: {error}") from None
    finally:
        if caught:
            _log_warnings(caught, file_name)
