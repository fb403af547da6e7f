"""Checking an uploaded image before it is decoded: its type by content, its pixel count.

The file a user sends is saved under a fixed name chosen from its content (``input.png``,
``input.jpg``, ``input.tif``); the name the user gave is only shown back, never used as a path.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..colorize import to_gray
from ..errors import AerocolorError, ImageReadError
from ..imageio import read_image

# Leading bytes of each accepted format -> the suffix its saved copy gets.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"II+\x00", ".tif"),
    (b"MM\x00+", ".tif"),
)
FORMATS = "PNG, JPEG, TIFF or GeoTIFF"


class UploadError(AerocolorError):
    """An upload the server refuses, with the HTTP status that says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """An accepted upload, decoded to gray."""

    gray: np.ndarray
    georeferenced: bool
    notes: list[str]


def display_name(name: str | None) -> str:
    """A user's file name reduced to a harmless stem for messages and download names."""
    stem = Path(name or "").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return stem[:80] or "image"


def suffix_for(head: bytes) -> str:
    for signature, suffix in SIGNATURES:
        if head.startswith(signature):
            return suffix
    raise UploadError(f"unsupported file type; give a {FORMATS} file", 415)


def pixel_size(path: Path, name: str) -> tuple[int, int]:
    """(width, height) read from the file's header only, nothing decoded."""
    try:
        if path.suffix == ".tif":
            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    return src.width, src.height
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError:  # PIL's own guard fires first on absurd sizes
        raise UploadError(f"{name}: far more pixels than this server accepts; "
                          "crop or downscale the image", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UploadError(f"{name}: the file is corrupt or truncated ({type(e).__name__}); "
                          f"give a valid {FORMATS} file", 422) from None


def is_georeferenced(path: Path) -> bool:
    """A TIFF with a coordinate reference system: its result can be a GeoTIFF."""
    if path.suffix != ".tif":
        return False
    import rasterio

    with rasterio.open(path) as src:
        return src.crs is not None


def check_pixels(path: Path, name: str, max_pixels: int) -> tuple[int, int]:
    width, height = pixel_size(path, name)
    if width * height > max_pixels:
        raise UploadError(f"{name}: {width}x{height} pixels is more than this server's limit of "
                          f"{max_pixels / 1e6:g} megapixels; crop or downscale the image", 413)
    if min(width, height) < 1:
        raise UploadError(f"{name}: the image is empty", 422)
    return width, height


def decode_upload(path: Path, name: str, max_pixels: int) -> Upload:
    """Check the pixel count from the header, then decode to gray (colour is converted)."""
    check_pixels(path, name, max_pixels)
    try:
        img = read_image(path)
    except ImageReadError:
        raise UploadError(f"{name}: the image data is corrupt or truncated; "
                          f"give a valid {FORMATS} file", 422) from None
    notes: list[str] = []
    gray = to_gray(img, name, notes.append)
    return Upload(gray=np.ascontiguousarray(gray, np.float32),
                  georeferenced=is_georeferenced(path), notes=notes)
