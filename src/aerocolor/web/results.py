"""A job's folder: the gray input it keeps, the colour samples it makes, and their downloads.

Every file in it has a fixed name; nothing a user sends becomes part of a path.
"""

from __future__ import annotations

import copy
import shutil
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import rasterio

from ..imageio import atomic_write, write_image
from ..infer.colorizer import DEFAULT_OVERLAP
from ..infer.raster import open_raster, output_profile, quantize, valid_mask
from ..infer.reference import Grid, Reference, load_reference
from .catalog import ModelCatalog
from .jobs import Job
from .uploads import Upload, check_pixels, decode_upload, suffix_for

GRAY_ARRAY = "gray.npz"  # 16-bit, compressed: exact for 8- and 16-bit inputs, small on disk
GRAY_PNG = "gray.png"
SOURCE_RASTER = "source.tif"  # a georeferenced upload, kept until its GeoTIFFs are written
REFERENCE = "reference"  # a colour reference upload, with the suffix its content calls for


def result_png(folder: Path, index: int) -> Path:
    return folder / f"color-{index}.png"


def result_geotiff(folder: Path, index: int) -> Path:
    return folder / f"color-{index}.tif"


def store_upload(file: BinaryIO, folder: Path, name: str, max_pixels: int) -> Upload:
    """Save an uploaded file under a name chosen by its content, check it, keep its gray (and
    the file itself when it is georeferenced)."""
    suffix = suffix_for(file.read(16))
    file.seek(0)
    saved = folder / f"input{suffix}"
    with open(saved, "wb") as out:
        shutil.copyfileobj(file, out)
    try:
        upload = decode_upload(saved, name, max_pixels)
        if upload.georeferenced:
            saved.rename(folder / SOURCE_RASTER)
    finally:
        saved.unlink(missing_ok=True)
    np.savez_compressed(folder / GRAY_ARRAY, gray=np.round(upload.gray * 65535.0).astype(np.uint16))
    write_image(folder / GRAY_PNG, upload.gray)
    return upload


def store_reference(file: BinaryIO, folder: Path, name: str, max_pixels: int) -> Path:
    """Save an uploaded colour reference under a fixed name; its pixel count is checked."""
    suffix = suffix_for(file.read(16))
    file.seek(0)
    saved = folder / f"{REFERENCE}{suffix}"
    with open(saved, "wb") as out:
        shutil.copyfileobj(file, out)
    check_pixels(saved, name, max_pixels)
    return saved


def job_reference(job: Job, scale: int, warn=None) -> Reference | None:
    """A job's colour reference on its input's grid (a georeferenced input and reference), or
    as a palette; None without one."""
    if job.reference_strength is None:
        return None
    path = next(job.folder.glob(f"{REFERENCE}.*"))
    grid = None
    if job.georeferenced:
        with open_raster(job.folder / SOURCE_RASTER) as src:
            grid = Grid.of(src)
    return load_reference(path, grid, scale, job.reference_strength, warn or (lambda _: None))


def write_geotiff(path: Path, colour: np.ndarray, source: Path) -> Path:
    """Colour HxWx3 in [0, 1] as a GeoTIFF on the source raster's grid: its CRS, transform,
    bit depth, nodata and mask (the conventions of :mod:`aerocolor.infer.raster`)."""
    with open_raster(source) as src:
        bands = [1, 2, 3] if src.count >= 3 else [1]
        profile, has_mask = output_profile(src, bands, "deflate")
        valid = valid_mask(src, bands)

    def write(tmp: str) -> None:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp, "w", **profile) as dst:
            dst.write(quantize(colour, valid, profile["dtype"], profile["nodata"]))
            if has_mask:
                dst.write_mask(valid.astype(np.uint8) * 255)

    return atomic_write(path, write)


@lru_cache(maxsize=1)
def restorer():
    """The bundled restoration model, loaded once (it keeps nothing between calls)."""
    from ..restore.restore import RestoreOptions, Restorer

    return Restorer.load(None, RestoreOptions(device="cpu"))


def colorize_job(job: Job, catalog: ModelCatalog, tile: int) -> None:
    """Colorize a job's gray input into one PNG (and GeoTIFF, for a georeferenced input) per
    sample, reporting progress on the job."""
    colorizer = copy.copy(catalog.colorizer(job.model))  # shares the generator, not the saturation
    colorizer.chroma *= job.saturation
    with np.load(job.folder / GRAY_ARRAY) as saved:
        gray = (saved["gray"].astype(np.float64) / 65535.0).astype(np.float32)
    if job.restore:
        gray = restorer().restore(gray)[0]
        write_image(job.folder / GRAY_PNG, gray)  # show what was colorized
    codes = colorizer.latent_codes(job.samples, job.seed) if colorizer.multimodal else [None]
    reference = job_reference(job, colorizer.config.model.reference.scale)
    tops, lefts, _, _ = colorizer.plan(*gray.shape, tile, DEFAULT_OVERLAP)
    tiles = len(tops) * len(lefts)
    total = tiles * len(codes)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        job.progress = min(done / total, 0.99)

    for index, z in enumerate(codes):
        z = None if z is None else z[None]
        colour = colorizer.colorize(gray, tile=tile, overlap=DEFAULT_OVERLAP, z=z, progress=advance,
                                    reference=reference)
        write_image(result_png(job.folder, index), colour)
        if job.georeferenced:
            write_geotiff(result_geotiff(job.folder, index), colour, job.folder / SOURCE_RASTER)
        done = (index + 1) * tiles
        job.progress = min(done / total, 0.99)
    (job.folder / SOURCE_RASTER).unlink(missing_ok=True)
