"""Safe image decoding: PNG or JPEG bytes into the uint8 (C, H, W) array a model takes, refusing what is not one or too big.

The header is read and checked (format, pixel count) before any pixel is decoded, so a small file that claims
20,000 × 20,000 pixels (a decompression bomb) is refused without allocating them. predict and serve both decode here.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DnicError

FORMATS = ("PNG", "JPEG")  # what PIL may open: no other decoder (and none of their histories) is reachable from a request
EXTENSIONS = (".png", ".jpg", ".jpeg")  # the files a folder contributes
MAX_PIXELS = 40_000_000  # 40 megapixels: a phone photo passes; a model sees at most 32×32 of it anyway
MAX_FILE_BYTES = 64 * 2**20  # files read from disk; the server has its own, smaller upload limit
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # the first bytes of a PNG and of a JPEG


class ImageProblem(DnicError):
    """An image that cannot be used; the subclass says why (the server answers each with its own status)."""


class EmptyImage(ImageProblem):
    """No bytes at all."""


class NotAnImage(ImageProblem):
    """Bytes that are neither a PNG nor a JPEG."""


class CorruptImage(ImageProblem):
    """A PNG or JPEG whose header or pixel data is broken or truncated."""


class ImageTooLarge(ImageProblem):
    """More pixels (or bytes) than the limits allow."""


def too_many_pixels(name: str, width: int, height: int) -> ImageTooLarge:
    """The error for an image of more than MAX_PIXELS pixels."""
    return ImageTooLarge(f"{name} is {width:,} × {height:,} pixels, more than the {MAX_PIXELS / 1e6:.0f} megapixels accepted.",
                         "resize it first (the model sees a few dozen pixels a side anyway).")


def open_image(data: bytes, name: str = "the image") -> Image.Image:
    """The PNG or JPEG in `data`, header read and checked but no pixel decoded yet; a clear ImageProblem otherwise."""
    if not data:
        raise EmptyImage(f"{name} is empty (0 bytes).", "send a PNG or JPEG file.")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:  # PIL's own, higher limit: the header already named too many pixels
        raise ImageTooLarge(f"{name} claims more than {MAX_PIXELS / 1e6:.0f} megapixels.", "resize it first.") from None
    except (UnidentifiedImageError, OSError, ValueError, EOFError):  # a plugin may also fail on a header it half-read
        if data.startswith(SIGNATURES):
            raise CorruptImage(f"{name} starts like a PNG or JPEG but its header is broken.", "re-save or re-export the image.") from None
        raise NotAnImage(f"{name} is not a PNG or JPEG image.", "send a PNG or JPEG file.") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise too_many_pixels(name, width, height)
    return image


def decode(data: bytes, channels: int, size: int, name: str = "the image") -> np.ndarray:
    """PNG or JPEG bytes as uint8 (channels, size, size): EXIF orientation applied, made grey (luma) or RGB, resized bilinearly with antialiasing."""
    image = open_image(data, name)
    try:
        image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")  # decodes the pixels
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError or zlib errors for broken data
        raise CorruptImage(f"{name} is corrupt or truncated ({type(err).__name__}: {err}).", "re-save or re-export the image.") from None
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)  # PIL widens the filter when shrinking: antialiased
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1).copy()


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, refusing a missing path, a folder or more than MAX_FILE_BYTES before reading."""
    path = Path(path)
    if not path.is_file():
        raise DnicError(f"{path} does not exist or is not a file.", "pass PNG or JPEG files, or folders of them.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageTooLarge(f"{path} is {size / 2**20:,.0f} MB, more than the {MAX_FILE_BYTES // 2**20} MB accepted.", "resize or compress it first.")
    return path.read_bytes()
