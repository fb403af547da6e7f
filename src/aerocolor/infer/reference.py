"""Colour references at inference: a raster reprojected onto the input's grid, tiles of a map
service over the input's footprint, or any colour image as a palette.

A georeferenced reference is warped (rasterio / GDAL, average resampling) onto a coarse version
of the input's grid, ``scale`` input pixels a side per cell (the scale the model was trained at);
each tile then gets its planes by bilinear upsampling of the cells around it, which gives every
tile the same values as upsampling the whole grid at once. Cells where the reference has no data
(outside its footprint, nodata, masked) get none, and the model works there as without one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AerocolorError
from ..reference import (
    MIN_VALID_FRACTION,
    mean_ab,
    palette_planes,
    planes_from_coarse_rgb,
    upsample_planes,
)

log = logging.getLogger("aerocolor")

MIN_COLOURFULNESS = 0.01  # mean |RGB spread| of a reference below this is gray (no colour to give)
FULL_COVER = 0.99  # a reference covering less of the input than this is reported


class ReferenceError(AerocolorError):
    """A reference that cannot be used (unreadable, gray, not overlapping the input)."""


@dataclass(frozen=True)
class Grid:
    """Where an input lies: CRS, affine transform and size (a rasterio dataset's grid)."""

    crs: object
    transform: object
    height: int
    width: int

    @classmethod
    def of(cls, src) -> Grid | None:
        """The grid of a rasterio dataset, or None when it is not georeferenced."""
        if src.crs is None or src.transform.is_identity:
            return None
        return cls(src.crs, src.transform, src.height, src.width)


@dataclass
class Reference:
    """A colour reference ready for one input: ``coarse`` planes (3, h, w) (a, b, valid) at
    1/``scale`` of the input grid, or a ``palette`` (2,) mean a*b* (/110) for the whole input.
    ``strength`` in [0, 1] blends the outputs with and without it."""

    scale: int
    coarse: torch.Tensor | None = None
    palette: torch.Tensor | None = None
    strength: float = 1.0
    source: str = ""

    @property
    def covered(self) -> float:
        """Share of the input that the reference covers."""
        return 1.0 if self.coarse is None else float(self.coarse[2].mean())

    def window(self, top: int, left: int, height: int, width: int) -> torch.Tensor:
        """The planes (1, 4, height, width) of an input window."""
        if self.coarse is None:
            return palette_planes(self.palette[None], (height, width))
        s = self.scale
        _, ch, cw = self.coarse.shape
        y0, x0 = max(top // s - 1, 0), max(left // s - 1, 0)
        y1, x1 = min((top + height - 1) // s + 2, ch), min((left + width - 1) // s + 2, cw)
        patch = self.coarse[None, :, y0:y1, x0:x1]
        planes = upsample_planes(patch, s, ((y1 - y0) * s, (x1 - x0) * s))
        dy, dx = top - y0 * s, left - x0 * s
        return planes[..., dy:dy + height, dx:dx + width]


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise AerocolorError(f"--reference-strength {strength}: give a value from 0 (ignore the "
                             "reference) to 1 (follow it fully)")
    return strength


def _scaled(data: np.ndarray, valid: np.ndarray, name: str) -> np.ndarray:
    """Raster values -> [0, 1]: 8-bit as is, deeper data by its 99.5th percentile."""
    if data.dtype == np.uint8:
        return data.astype(np.float32) / 255.0
    values = data[:, valid] if valid.any() else data.reshape(data.shape[0], -1)
    top = float(np.percentile(values, 99.5)) if values.size else 0.0
    if not math.isfinite(top) or top <= 0:
        raise ReferenceError(f"{name}: the reference holds no positive values; give a colour image")
    return np.clip(np.nan_to_num(data.astype(np.float32) / top), 0, 1)


def _check_colour(rgb: np.ndarray, valid: np.ndarray, name: str) -> None:
    """Refuse a reference that has no colour: one band, or three equal ones."""
    if not valid.any():
        return
    spread = (rgb.max(axis=0) - rgb.min(axis=0))[valid]
    if float(spread.mean()) < MIN_COLOURFULNESS:
        raise ReferenceError(f"{name}: the reference is gray (no colour to take); give a colour "
                             "image or orthophoto")


def raster_reference(path: Path, grid: Grid, scale: int, strength: float = 1.0,
                     warn: Callable[[str], None] = log.warning) -> Reference:
    """A georeferenced colour raster (any CRS and resolution) warped onto ``grid`` at 1/``scale``."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.vrt import WarpedVRT

    name = str(path)
    try:
        src = rasterio.open(path)
    except RasterioIOError as e:
        raise ReferenceError(f"{name}: not a readable reference raster ({str(e).splitlines()[0]}); "
                             "give a GeoTIFF or other GDAL raster") from None
    with src:
        if src.count < 3:
            raise ReferenceError(f"{name}: the reference has {src.count} band(s), so it is gray; "
                                 "give a colour (RGB) raster")
        if src.crs is None or src.transform.is_identity:
            raise ReferenceError(f"{name}: the reference is not georeferenced; for a scan or photo "
                                 "without georeference its palette is used only with inputs that "
                                 "have none either")
        h, w = math.ceil(grid.height / scale), math.ceil(grid.width / scale)
        transform = grid.transform @ grid.transform.scale(scale, scale)
        with WarpedVRT(src, crs=grid.crs, transform=transform, width=w, height=h,
                       resampling=Resampling.average, add_alpha=True) as vrt:
            data = vrt.read(indexes=[1, 2, 3])
            alpha = vrt.read(vrt.count)
            valid = (alpha > 0) & (vrt.read_masks(1) > 0)
        if not valid.any():
            raise ReferenceError(f"{name}: the reference does not overlap the input at all "
                                 f"(its bounds {tuple(round(v, 3) for v in src.bounds)} in {src.crs}); "
                                 "give a reference of the same place")
        rgb = _scaled(data, valid, name)
    _check_colour(rgb, valid, name)
    t = torch.from_numpy(rgb)[None]
    v = torch.from_numpy(valid.astype(np.float32))[None, None]
    coarse = planes_from_coarse_rgb(t, v >= MIN_VALID_FRACTION)[0]
    ref = Reference(scale, coarse=coarse, strength=strength, source=name)
    if ref.covered < FULL_COVER:
        warn(f"{name}: the reference covers {100 * ref.covered:.0f}% of the input; the rest is "
             "colorized without it")
    return ref


def image_palette(path: Path, scale: int, strength: float = 1.0) -> Reference:
    """Any colour image (no georeference needed) as a palette: its mean colour."""
    from ..data.datasets import nodata_mask
    from ..imageio import as_rgb, read_image

    name = str(path)
    img = read_image(path)
    if img.ndim == 2 or img.shape[2] < 3:
        raise ReferenceError(f"{name}: the reference is gray (one band); give a colour image")
    rgb = as_rgb(img)
    valid = nodata_mask(rgb).astype(bool)
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32)
    _check_colour(chw, valid, name)
    mean = mean_ab(torch.from_numpy(chw)[None], torch.from_numpy(valid)[None, None])[0]
    return Reference(scale, palette=mean, strength=strength, source=name)


def load_reference(path: Path, grid: Grid | None, scale: int, strength: float = 1.0,
                   warn: Callable[[str], None] = log.warning) -> Reference:
    """A reference for an input on ``grid`` (None: not georeferenced): warped onto the grid
    when both are georeferenced, else a palette (with a note saying so)."""
    if not path.is_file():
        raise ReferenceError(f"{path}: no such reference file")
    if _georeferenced(path) and grid is not None:
        return raster_reference(path, grid, scale, strength, warn)
    why = "the input has no georeference" if grid is None else "the reference has no georeference"
    warn(f"{path}: {why}, so its palette (mean colour) is used, not its layout")
    return image_palette(path, scale, strength)


def metres_per_pixel(grid: Grid) -> float:
    """A grid's ground resolution in metres (degrees taken at the equator)."""
    t = grid.transform
    size = math.sqrt(abs(t.a * t.e - t.b * t.d))
    if grid.crs.is_geographic:
        return size * 111_320.0
    return size * grid.crs.linear_units_factor[1]


def service_mosaic(url: str, layer: str | None, grid: Grid, scale: int, cache: Path,
                   progress: bool = True, zoom: str | None = None) -> Path:
    """Fetch (cached, resumable) the tiles of a WMTS layer or XYZ template covering ``grid``'s
    footprint, at zoom level ``zoom`` or else about half the coarse cell size, and mosaic them
    into a GeoTIFF in ``cache``."""
    import rasterio
    import shapely
    from rasterio.transform import array_bounds, from_origin

    from ..data.area import Area
    from ..data.harvest import Fetcher, RateLimit, decode_tile, harvest, plan_tiles
    from ..data.sources import http_session, is_xyz, open_wmts, open_xyz
    from ..imageio import atomic_write

    session = http_session()
    if is_xyz(url):
        lyr = open_xyz(url, layer or "xyz")
    elif not layer:
        raise ReferenceError(f"--reference-wmts {url}: give the layer with --reference-layer NAME")
    else:
        lyr = open_wmts(url, layer, session)
    south, west, north, east = (array_bounds(grid.height, grid.width, grid.transform)[i] for i in (1, 0, 3, 2))
    area = Area(shapely.box(west, south, east, north), grid.crs.to_string(), "the input's footprint")
    matrix = lyr.matrix(zoom, metres_per_pixel(grid) * scale / 2)
    plan = plan_tiles(lyr, matrix, area)
    result = harvest([plan], cache, Fetcher(session, RateLimit(10.0)), progress=progress)
    jobs = list(plan)
    rows = [j.row for j in jobs]
    cols = [j.col for j in jobs]
    r0, c0 = min(rows), min(cols)
    th, tw = matrix.tile_height, matrix.tile_width
    rgb = np.zeros((3, (max(rows) - r0 + 1) * th, (max(cols) - c0 + 1) * tw), np.uint8)
    mask = np.zeros(rgb.shape[1:], np.uint8)
    for job in jobs:
        path = cache / lyr.name / job.rel_path
        if not path.is_file():
            continue  # blank, absent or failed: no data there
        img = decode_tile(path.read_bytes())
        y, x = (job.row - r0) * th, (job.col - c0) * tw
        rgb[:, y:y + th, x:x + tw] = img[:, :, :3].transpose(2, 0, 1)
        mask[y:y + th, x:x + tw] = 255 if img.shape[2] == 3 else img[:, :, 3]
    if not mask.any():
        raise ReferenceError(f"{url} layer {lyr.name!r}: no tile with data over the input "
                             f"({result.summary()}); check the layer and its coverage")
    res = matrix.resolution
    transform = from_origin(matrix.left + c0 * tw * res, matrix.top - r0 * th * res, res, res)
    out = cache / lyr.name / f"mosaic_{matrix.identifier}_{r0}_{c0}_{max(rows)}_{max(cols)}.tif"

    def write(tmp: str) -> None:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(
                tmp, "w", driver="GTiff", width=rgb.shape[2], height=rgb.shape[1], count=3,
                dtype="uint8", crs=matrix.crs, transform=transform, compress="deflate") as dst:
            dst.write(rgb)
            dst.write_mask(mask)

    return atomic_write(out, write)


@dataclass(frozen=True)
class ReferenceSpec:
    """What the user gave as a reference: a file, or a map service (WMTS URL or XYZ template
    and its layer), with a strength; made into a :class:`Reference` for each input's grid."""

    path: Path | None = None
    service: str | None = None
    layer: str | None = None
    strength: float = 1.0
    zoom: str | None = None
    cache: Path = Path(".aerocolor_reference_tiles")
    progress: bool = True
    warn: Callable[[str], None] = field(default=log.warning, compare=False)

    def __post_init__(self) -> None:
        check_strength(self.strength)
        if (self.path is None) == (self.service is None):
            raise ReferenceError("give one reference: --reference FILE or --reference-wmts URL")

    def for_grid(self, grid: Grid | None, scale: int, name: str = "the input") -> Reference:
        """The reference for an input on ``grid`` (None: not georeferenced)."""
        if self.path is not None:
            return load_reference(self.path, grid, scale, self.strength, self.warn)
        if grid is None:
            raise ReferenceError(f"{name}: not georeferenced, so a map-service reference cannot be "
                                 "placed on it; give --reference with a colour image instead")
        mosaic = service_mosaic(self.service, self.layer, grid, scale, self.cache, self.progress, self.zoom)
        return raster_reference(mosaic, grid, scale, self.strength, self.warn)


def _georeferenced(path: Path) -> bool:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return Grid.of(src) is not None
    except RasterioIOError as e:
        raise ReferenceError(f"{path}: not a readable reference raster ({str(e).splitlines()[0]}); "
                             "give a GeoTIFF, PNG or JPEG colour image") from None


def pad_planes(planes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Planes padded at the bottom/right (replicated) to the padded input's size."""
    ph, pw = height - planes.shape[-2], width - planes.shape[-1]
    if ph == 0 and pw == 0:
        return planes
    return F.pad(planes, (0, pw, 0, ph), mode="replicate")
