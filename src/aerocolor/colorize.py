"""Colorizing image files: read, convert to gray, colorize, write results and comparisons."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .color import gray_from_rgb, to_tensor
from .errors import AerocolorError, ImageReadError
from .imageio import (
    IMAGE_SUFFIXES,
    as_rgb,
    extra_pages_note,
    georeference_optional,
    is_color,
    list_images,
    read_image,
    remove_orphaned_temps,
    write_image,
)
from .infer.colorizer import DEFAULT_OVERLAP, DEFAULT_TILE, Colorizer
from .infer.generator import NormStats
from .infer.raster import RasterOptions, colorize_raster, is_raster, raster_output_path, raster_preview
from .infer.reference import ReferenceSpec

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
            root = Path(p.anchor) if p.is_absolute() else Path()
            matches = sorted(root.glob(str(p.relative_to(p.anchor)) if p.is_absolute() else item))
            files += [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES]
            if not matches:
                raise ImageReadError(f"{item}: the pattern matches no files")
        elif p.is_dir():
            found = list_images(p)
            if not found:
                raise ImageReadError(f"{item}: a folder without images ({', '.join(IMAGE_SUFFIXES)}); "
                                     "give a folder that holds images, or the image files")
            files += found
        else:
            files.append(p)
    return files


def latent_variants(colorizer: Colorizer, samples: int = 0, style: Path | None = None,
                    seed: int = 0) -> list[tuple[str, torch.Tensor]] | None:
    """(file-name tag, latent code) per colorization of a multimodal model: ``samples`` seeded
    codes tagged _1.._K (around the code of colour image ``style`` when given), or the style's own
    code alone; None when neither is asked for."""
    if not samples and style is None:
        return None
    reference = as_rgb(read_image(style)) if style is not None else None
    codes = colorizer.latent_codes(samples, seed, reference)
    if not samples:
        return [("", codes)]
    return [(f"_{k + 1}", codes[k:k + 1]) for k in range(samples)]


def colorize_files(colorizer: Colorizer, inputs: list[Path], out_dir: Path, compare: bool = False,
                   tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, skip_existing: bool = False,
                   suffix: str = "_color", warn=print, progress: bool = True,
                   latents: list[tuple[str, torch.Tensor]] | None = None,
                   raster: RasterOptions | None = None,
                   on_error: Callable[[Path, AerocolorError], None] | None = None,
                   reference: ReferenceSpec | None = None) -> list[Path]:
    """Colorize each input image into ``out_dir`` as NAME_color.png, or NAME_color_k.png for each
    code of ``latents`` (see :func:`latent_variants`), (and NAME_compare.png);
    rasters (GeoTIFF, JPEG2000, ...) are streamed into georeferenced NAME_color.tif files.
    A colour ``reference`` is placed on each georeferenced raster's grid, or gives the palette.
    With ``on_error``, an input that cannot be colorized is reported to it and the others go on.
    Temp files that killed runs left in ``out_dir`` are removed first; a raster that was being
    colorized resumes (see :func:`~aerocolor.infer.raster.colorize_raster`)."""
    written: list[Path] = []
    remove_orphaned_temps(out_dir)
    raster = raster or RasterOptions(tile=tile, overlap=overlap)
    for path in tqdm(inputs, unit="image", disable=not progress or len(inputs) < 2, desc="colorize"):
        try:
            if note := extra_pages_note(path):
                warn(f"warning: {note}")
            with georeference_optional():  # scans without georeference give outputs without one
                written += colorize_one(colorizer, path, out_dir, compare, tile, overlap, skip_existing,
                                        suffix, warn, progress, latents or [("", None)], raster, reference)
        except AerocolorError as e:
            if on_error is None:
                raise
            on_error(path, e)
    return written


def colorize_one(colorizer: Colorizer, path: Path, out_dir: Path, compare: bool, tile: int, overlap: int,
                 skip_existing: bool, suffix: str, warn, progress: bool,
                 variants: list[tuple[str, torch.Tensor | None]], raster: RasterOptions,
                 reference: ReferenceSpec | None = None, stats: NormStats = None) -> list[Path]:
    """The outputs of one input (see :func:`colorize_files`); ``stats``: shared whole-input
    statistics instead of the input's own (``aerocolor.archive``'s --consistent)."""
    written: list[Path] = []
    if is_raster(path):
        targets = []
        for tag, z in variants:
            target = raster_output_path(path, out_dir, f"{suffix}{tag}")
            if not (skip_existing and target.exists()):
                written.append(colorize_raster(colorizer, path, target, raster, progress, z=z,
                                               reference=reference, stats=stats, log=warn))
            targets.append(target)
        preview = out_dir / f"{path.stem}_compare.png"
        if compare and not (skip_existing and preview.exists()):
            panels = [raster_preview(path, t, raster) for t in targets]
            written.append(write_image(preview, side_by_side(panels[0][0], *(c for _, c in panels))))
        return written
    targets = [out_dir / f"{path.stem}{suffix}{tag}.png" for tag, _ in variants]
    if skip_existing and all(t.exists() for t in targets):
        return written
    img = read_image(path)
    gray = to_gray(img, str(path), warn)
    ref = None if reference is None else reference.for_grid(None, colorizer.config.model.reference.scale,
                                                            str(path))
    colours = [colorizer.colorize(gray, tile=tile, overlap=overlap, batch_size=raster.batch_size, z=z,
                                  reference=ref, stats=stats) for _, z in variants]
    written += [write_image(t, c) for t, c in zip(targets, colours, strict=True)]
    if compare:
        panels = [gray, *colours] + ([img] if img.ndim == 3 and is_color(img) else [])
        written.append(write_image(out_dir / f"{path.stem}_compare.png", side_by_side(*panels)))
    return written
