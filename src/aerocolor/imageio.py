"""Reading and writing plain images (PNG, JPEG, TIFF) as float arrays in [0, 1]."""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import AerocolorError, ImageReadError, OutputError

MAX_PIXELS_ENV = "AEROCOLOR_MAX_PIXELS"
# images whose header claims more pixels are refused (default: PIL's own limit, about 89 million)
Image.MAX_IMAGE_PIXELS = int(os.environ.get(MAX_PIXELS_ENV, "0")) or Image.MAX_IMAGE_PIXELS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
TIFF_SUFFIXES = (".tif", ".tiff")


def list_images(folders: str | Path | list[str | Path], recursive: bool = True) -> list[Path]:
    """All image files under the given folders (or the files themselves), sorted.

    A ``.txt`` file is a list of images, one path per line (relative to the list's folder; blank
    lines and lines starting with ``#`` are skipped), e.g. a fixed selection split."""
    items = [folders] if isinstance(folders, (str, Path)) else list(folders)
    found: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix.lower() == ".txt":
            found += read_image_list(p)
        elif p.is_file():
            found.append(p)
        elif p.is_dir():
            pattern = "**/*" if recursive else "*"
            # hidden entries are work in progress (atomic temp files, staging folders), not images
            found += [f for f in p.glob(pattern) if f.suffix.lower() in IMAGE_SUFFIXES
                      and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        else:
            raise ImageReadError(f"{p}: no such file or folder; give a folder of images or image files")
    return sorted(found)


def read_image_list(path: Path) -> list[Path]:
    entries = [ln.strip() for ln in path.read_text().splitlines()]
    files = [path.parent / e for e in entries if e and not e.startswith("#")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ImageReadError(f"image list {path}: {len(missing)} listed file(s) not found, e.g. {missing[0]}; "
                             "paths in a list are relative to the list's folder")
    return files


def set_pixel_limit(limit: int) -> None:
    """Refuse images whose header claims more than ``limit`` pixels (``--max-pixels``; the
    same limit as AEROCOLOR_MAX_PIXELS)."""
    if limit < 1:
        raise AerocolorError(f"--max-pixels {limit}: give a positive pixel count, e.g. --max-pixels 500000000")
    Image.MAX_IMAGE_PIXELS = limit


@contextmanager
def kept_pixel_limit() -> Iterator[None]:
    """Restore the pixel limit afterwards (a command's ``--max-pixels`` ends with the command)."""
    saved = Image.MAX_IMAGE_PIXELS
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def check_pixel_count(path: str | Path, width: int, height: int) -> None:
    """Refuse an image whose header claims more pixels than the limit (a decompression bomb)."""
    if width * height > Image.MAX_IMAGE_PIXELS:
        raise ImageReadError(_bomb_message(path, f"{width} x {height} pixels, more than the limit of "
                                                 f"{Image.MAX_IMAGE_PIXELS:,}"))


def _bomb_message(path: str | Path, claim: str | None = None) -> str:
    claim = claim or f"more than {Image.MAX_IMAGE_PIXELS:,} pixels"
    return (f"{path}: its header claims {claim} (a guard against decompression bombs); if the file "
            f"is trusted, raise the limit with --max-pixels N (or {MAX_PIXELS_ENV}=N)")


def _scale(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return (arr.astype(np.float32) - max(info.min, 0)) / float(info.max - max(info.min, 0))
    arr = arr.astype(np.float32)
    valid = np.isfinite(arr)
    peak = float(arr[valid].max(initial=0))
    arr = np.where(valid, arr, 0.0).astype(np.float32)  # NaN / inf no-data: black, masked as no-data
    return np.clip(arr, 0.0, 1.0) if peak <= 1.0 else np.clip(arr / peak, 0.0, 1.0)


@contextmanager
def georeference_optional() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning: code run inside handles scans without
    georeference on purpose (their outputs simply carry none)."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def extra_pages_note(path: str | Path) -> str | None:
    """A one-line warning for a multi-page TIFF, of which only the first page is read."""
    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return None
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with georeference_optional(), rasterio.open(path) as src:
            pages = len(src.subdatasets) if src.driver == "GTiff" else 0
    except RasterioIOError:
        return None  # the reader reports an unreadable file
    if pages < 2:
        return None
    return f"{path}: a multi-page TIFF ({pages} pages); only the first page is used"


def _read_tiff(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with georeference_optional():
            with rasterio.open(path) as src:
                bands = min(src.count, 3) if src.count >= 3 else 1
                arr = src.read(list(range(1, bands + 1)), masked=True)
                if np.issubdtype(arr.dtype, np.floating):  # no-data values must not set the scale
                    arr = arr.filled(np.nan)
                else:
                    arr = arr.filled(0)
    except RasterioIOError as e:
        raise ImageReadError(f"{path}: not a readable TIFF ({e}); check the file") from None
    arr = np.moveaxis(arr, 0, -1)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as float32 in [0, 1]: HxW for gray, HxWx3 for colour.

    8- and 16-bit data are scaled by their full range; alpha is dropped; palette images are
    expanded.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.suffix.lower() in TIFF_SUFFIXES:
        arr = _read_tiff(path)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im_ctx = Image.open(path)
            with im_ctx as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    arr = np.array(im)
                    if im.mode.startswith("I;16"):
                        arr = arr.astype(np.uint16)
                elif im.mode in ("L", "LA", "1"):
                    arr = np.array(im.convert("L"))
                else:
                    arr = np.array(im.convert("RGB"))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageReadError(_bomb_message(path)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageReadError(
                f"{path}: not a readable image ({type(e).__name__}: {e}); "
                "give a PNG, JPEG or TIFF file"
            ) from None
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[:, :, :3]
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).any():
        raise ImageReadError(f"{path}: no valid pixels (every value is NaN, infinite or no-data); "
                             "check the file")
    return _scale(arr)


def as_rgb(img: np.ndarray) -> np.ndarray:
    """An image as (H, W, 3): a gray (H, W) one repeated over three channels, a colour one as is."""
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def is_color(img: np.ndarray, tol: float = 1.0 / 255) -> bool:
    """True when an image has three channels that are not all equal."""
    if img.ndim == 2:
        return False
    return bool(np.abs(img[:, :, 0] - img[:, :, 1]).max() > tol or np.abs(img[:, :, 1] - img[:, :, 2]).max() > tol)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp's temp files are 0600)


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """Create (if needed) and check an output folder before any work starts: not a file, and
    writable; the error names the option and the fix."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} {path}: is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".aerocolor-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{option} {path}: a file is in the way of this folder; give another path") from None
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot write there ({e.strerror}); give a folder you can "
                          "write to") from None
    return path


TEMP_MARK = ".tmp-"  # atomic_write's temp files: .NAME.tmp-XXXXXXXX.SUFFIX (and derived .NAME.tmp-XXXXXXXX.SUFFIX.*)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<rand>[a-z0-9_]{8})")


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the file into place, so no half-written file is seen.
    The file gets the usual permissions for the umask (not the temp file's 0600). The temp file
    is locked while it is written, so :func:`remove_orphaned_temps` can tell it from the leftover
    of a killed process."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=path.suffix, dir=path.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    return path


def temp_owner_alive(path: Path) -> bool:
    """Whether a process still holds the lock of the temp file ``path`` (False when it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def remove_orphaned_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files that killed processes left in ``folder`` (their writer's lock is
    gone), with the files derived from them; files still being written are kept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    groups: dict[Path, list[Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMP_NAME.match(entry.name)
            if m and entry.is_file(follow_symlinks=False):
                name = m["name"]
                owner = folder / f".{name}{TEMP_MARK}{m['rand']}{Path(name).suffix}"
                groups.setdefault(owner, []).append(Path(entry.path))
    removed = []
    for owner, files in groups.items():
        if not temp_owner_alive(owner):
            for f in files:
                f.unlink(missing_ok=True)
                removed.append(f)
    return sorted(removed)


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write a float image in [0, 1] (HxW or HxWx3) as 8-bit PNG/JPEG/TIFF, atomically."""
    im = Image.fromarray(to_uint8(img))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        Path(path).suffix.lower(), "PNG"
    )
    return atomic_write(path, lambda tmp: im.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {})))
