"""Cutting GeoTIFFs and large scans into tiles with rasterio windows; each tile's georeference
(CRS, bounds, transform) goes into the manifest."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AerocolorError
from ..imageio import check_pixel_count, extra_pages_note, georeference_optional, write_image
from .manifest import write_manifest

# plain image formats: their header's size is checked against the decompression-bomb limit
# (--max-pixels), as when they are read as images elsewhere; GeoTIFFs and the like are not limited
WHOLE_IMAGE_DRIVERS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")
STAGING_PREFIX = ".tiles-in-progress-"


class RasterError(AerocolorError):
    pass


@dataclass
class TilingResult:
    written: int = 0
    skipped: int = 0
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for the user, one line each


def tile_offsets(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, plus one flush with the far edge."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def tile_windows(width: int, height: int, size: int,
                 stride: int) -> Iterator[tuple[int, int, object]]:
    """(row, col, Window) of the tiles covering a raster."""
    from rasterio.windows import Window

    for row, top in enumerate(tile_offsets(height, size, stride)):
        for col, left in enumerate(tile_offsets(width, size, stride)):
            yield row, col, Window(left, top, min(size, width - left), min(size, height - top))


def _band_list(src, bands: list[int] | None) -> list[int]:
    if bands:
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise RasterError(f"{src.name}: has bands 1-{src.count}, not {bad}; fix --bands")
        return bands
    from rasterio.enums import ColorInterp

    data = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha]
    return data[:3] if len(data) >= 3 else data[:1]


def _to_unit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    raise RasterError(f"unsupported data type {arr.dtype}: tiles are written from 8- or 16-bit "
                      "rasters; convert with gdal_translate -ot Byte -scale")


def valid_fraction(data: np.ndarray, mask: np.ndarray) -> float:
    """Share of pixels that carry data: inside the GDAL mask and not pure black in every band."""
    return float(((mask > 0) & (data.max(axis=0) > 0)).mean())


def georeferenced(src) -> bool:
    return src.crs is not None and not src.transform.is_identity


def cut_raster(path: str | Path, out_dir: str | Path, size: int = 256, stride: int | None = None,
               max_nodata: float = 0.5, bands: list[int] | None = None,
               require_georef: bool = False) -> TilingResult:
    """Write ``out_dir/<raster stem>/<row>_<col>.png`` for each tile with enough data."""
    import rasterio
    from rasterio.errors import RasterioIOError
    from rasterio.windows import bounds as window_bounds
    from rasterio.windows import transform as window_transform

    path, out_dir = Path(path), Path(out_dir)
    stride = stride or size
    if size < 8 or stride < 1:
        raise RasterError(f"tile size {size} / stride {stride}: use a size >= 8 and stride >= 1")
    result = TilingResult()
    if note := extra_pages_note(path):
        result.notes.append(note)
    try:
        with georeference_optional():
            src = rasterio.open(path)
    except RasterioIOError as e:
        raise RasterError(f"{path}: not a readable raster ({e}); give a GeoTIFF or image") from None
    with src:
        if src.driver in WHOLE_IMAGE_DRIVERS:
            check_pixel_count(path, src.width, src.height)
        geo = georeferenced(src)
        if require_georef and not geo:
            raise RasterError(f"{path}: not georeferenced (no CRS or transform); georeference "
                              "it first (e.g. in QGIS) or leave out --require-georef")
        band_list = _band_list(src, bands)
        for row, col, win in tile_windows(src.width, src.height, size, stride):
            try:
                data = src.read(band_list, window=win)
                share = valid_fraction(data, src.dataset_mask(window=win))
            except RasterioIOError as e:
                # GDAL's reason, without the path and band before it and the tuning hint after it
                gdal_reason = str(e.__cause__ or e).split(": ", 1)[-1].split(" (")[0]
                raise RasterError(f"{path}: unreadable from row {int(win.row_off)} on ({gdal_reason}); "
                                  "the file is truncated or corrupt: fetch or export it again") from None
            rel = f"{path.stem}/{row:04d}_{col:04d}.png"
            record = {"path": rel, "source": str(path), "row": row, "col": col,
                      "window": [int(win.col_off), int(win.row_off), int(win.width),
                                 int(win.height)],
                      "valid": round(share, 4),
                      "crs": src.crs.to_string() if geo else None,
                      "bounds": list(window_bounds(win, src.transform)) if geo else None,
                      "transform": list(window_transform(win, src.transform))[:6] if geo else None}
            if share < 1 - max_nodata:
                result.skipped += 1
                result.records.append({**record, "status": "nodata"})
                continue
            img = np.moveaxis(_to_unit(data), 0, -1)
            write_image(out_dir / rel, img[:, :, 0] if img.shape[2] == 1 else img)
            result.written += 1
            result.records.append({**record, "status": "ok"})
    return result


def cut_rasters(paths: list[str | Path], out_dir: str | Path, **options) -> TilingResult:
    """Tile several rasters into one folder with one manifest. Tiles are written to a hidden
    staging folder and moved into place only when every raster was read to the end, so a bad
    file leaves no partial output."""
    from .manifest import read_manifest

    out_dir = Path(out_dir)
    _remove_abandoned_staging(out_dir)
    staging = out_dir / f"{STAGING_PREFIX}{os.getpid()}"
    total = TilingResult()
    try:
        for p in paths:
            r = cut_raster(p, staging, **options)
            total.written += r.written
            total.skipped += r.skipped
            total.records += r.records
            total.notes += r.notes
        for tile in sorted(f for f in staging.rglob("*") if f.is_file()):
            target = out_dir / tile.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tile, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kept = {k: v for k, v in read_manifest(out_dir).items()
            if v.get("source") not in {str(Path(p)) for p in paths}}
    write_manifest(out_dir, {**kept, **{r["path"]: r for r in total.records}})
    return total


def _remove_abandoned_staging(out_dir: Path) -> None:
    """Staging folders of runs that were killed (their process is gone)."""
    for folder in out_dir.glob(f"{STAGING_PREFIX}*"):
        pid = folder.name.removeprefix(STAGING_PREFIX)
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True
