"""A job's folder: the gray input it keeps, the colour samples it makes, and their downloads.

Every file in it has a fixed name; nothing a user sends becomes part of a path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..imageio import atomic_write, read_image, to_uint8, write_image
from ..infer import Colorizer
from ..infer.colorizer import DEFAULT_OVERLAP, tile_windows
from .catalog import ModelCatalog
from .jobs import Job
from .uploads import Georef, Upload, decode_upload, suffix_for

GRAY_ARRAY = "gray.npy"
GRAY_PNG = "gray.png"


def result_png(folder: Path, index: int) -> Path:
    return folder / f"color-{index}.png"


def result_geotiff_path(folder: Path, index: int) -> Path:
    return folder / f"color-{index}.tif"


def store_upload(file: BinaryIO, folder: Path, name: str, max_pixels: int) -> Upload:
    """Save an uploaded file under a name chosen by its content, check it, keep its gray."""
    suffix = suffix_for(file.read(16))
    file.seek(0)
    saved = folder / f"input{suffix}"
    with open(saved, "wb") as out:
        shutil.copyfileobj(file, out)
    try:
        upload = decode_upload(saved, name, max_pixels)
    finally:
        saved.unlink()
    np.save(folder / GRAY_ARRAY, upload.gray)
    write_image(folder / GRAY_PNG, upload.gray)
    return upload


def latent_codes(colorizer: Colorizer, samples: int, seed: int) -> list[torch.Tensor | None]:
    """One random z per sample for a multimodal model (reproducible from ``seed``); else none."""
    if not colorizer.multimodal:
        return [None]
    gen = torch.Generator().manual_seed(seed)
    nz = colorizer.method.opts.nz
    return [torch.randn(1, nz, generator=gen).to(colorizer.device) for _ in range(samples)]


def colorize_job(job: Job, catalog: ModelCatalog, tile: int) -> None:
    """Colorize a job's gray input into one PNG per sample, reporting progress on the job."""
    colorizer = catalog.colorizer(job.model)
    gray = np.load(job.folder / GRAY_ARRAY)
    codes = latent_codes(colorizer, job.samples, job.seed)
    tiles = len(tile_windows(*gray.shape, tile, DEFAULT_OVERLAP))
    total = tiles * len(codes)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        job.progress = min(done / total, 0.99)

    for index, z in enumerate(codes):
        colour = colorizer.colorize(gray, tile=tile, overlap=DEFAULT_OVERLAP, z=z, progress=advance)
        write_image(result_png(job.folder, index), colour)
        done = (index + 1) * tiles
        job.progress = min(done / total, 0.99)


def write_geotiff(path: Path, rgb: np.ndarray, georef: Georef) -> Path:
    """An RGB uint8 GeoTIFF on the grid of the input (same CRS and transform)."""
    import rasterio

    h, w = rgb.shape[:2]
    tiled = h >= 256 and w >= 256
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=georef.crs,
                   transform=georef.transform, photometric="RGB", compress="deflate",
                   tiled=tiled, **({"blockxsize": 256, "blockysize": 256} if tiled else {}))

    def write(tmp: str) -> None:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(np.moveaxis(rgb, -1, 0))

    return atomic_write(path, write)


def result_geotiff(job: Job, index: int) -> Path:
    """The sample as a GeoTIFF with the input's georeference, written on first request."""
    path = result_geotiff_path(job.folder, index)
    if not path.is_file():
        write_geotiff(path, to_uint8(read_image(result_png(job.folder, index))), job.georef)
    return path
