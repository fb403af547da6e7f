"""Colorizing image files: read, convert to gray, colorize, write results and comparisons."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .color import gray_from_rgb, to_tensor
from .errors import ImageReadError
from .imageio import IMAGE_SUFFIXES, is_color, list_images, read_image, write_image
from .infer.colorizer import DEFAULT_OVERLAP, DEFAULT_TILE, Colorizer

log = logging.getLogger("aerocolor")


def to_gray(img: np.ndarray, name: str = "", warn=None) -> np.ndarray:
    """Gray HxW version of an image; a colour image is converted (and ``warn`` is told)."""
    if img.ndim == 2:
        return img
    if is_color(img):
        if warn is not None:
            warn(f"{name}: colour input, converted to gray before colorizing")
        return gray_from_rgb(to_tensor(img))[0, 0].numpy()
    return img[:, :, 0]


def side_by_side(*images: np.ndarray, gap: int = 8) -> np.ndarray:
    """Images (gray or colour, same height) joined left to right on a white background."""
    rows = [np.repeat(im[:, :, None], 3, 2) if im.ndim == 2 else im for im in images]
    h = max(r.shape[0] for r in rows)
    parts = []
    for i, r in enumerate(rows):
        if r.shape[0] < h:
            r = np.pad(r, ((0, h - r.shape[0]), (0, 0), (0, 0)), constant_values=1.0)
        parts.append(r)
        if i < len(rows) - 1:
            parts.append(np.ones((h, gap, 3), np.float32))
    return np.concatenate(parts, axis=1)


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Files, folders and glob patterns -> image files."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(Path().glob(item)) if not p.is_absolute() else sorted(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
            files += [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES]
            if not matches:
                raise ImageReadError(f"{item}: the pattern matches no files")
        elif p.is_dir():
            files += list_images(p)
        else:
            files.append(p)
    return files


def colorize_files(colorizer: Colorizer, inputs: list[Path], out_dir: Path, compare: bool = False,
                   tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, skip_existing: bool = False,
                   suffix: str = "_color", warn=print, progress: bool = True) -> list[Path]:
    """Colorize each input image into ``out_dir`` as NAME_color.png (and NAME_compare.png)."""
    written = []
    for path in tqdm(inputs, unit="image", disable=not progress or len(inputs) < 2, desc="colorize"):
        target = out_dir / f"{path.stem}{suffix}.png"
        if skip_existing and target.exists():
            continue
        img = read_image(path)
        gray = to_gray(img, str(path), warn)
        colour = colorizer.colorize(gray, tile=tile, overlap=overlap)
        written.append(write_image(target, colour))
        if compare:
            panels = [gray, colour] + ([img] if img.ndim == 3 and is_color(img) else [])
            written.append(write_image(out_dir / f"{path.stem}_compare.png", side_by_side(*panels)))
    return written
