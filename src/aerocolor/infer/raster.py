"""Colorizing georeferenced rasters of any size, streamed window by window with rasterio.

The gray raster is read in strips through the colorizer's tile blending (see
:mod:`aerocolor.infer.colorizer`), and each finished strip is written straight to a tiled,
compressed GeoTIFF (or a Cloud Optimized GeoTIFF with overviews) that keeps the input's CRS,
transform, nodata and mask. Memory stays bounded by a strip of tiles, whatever the raster's size.
A reader thread fetches the next strip and a writer thread converts and writes the last one while
the network runs. Finished strips are also kept in a journal beside the output (see
:mod:`aerocolor.infer.journal`), so that a killed job resumes where it stopped and still writes
the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from tqdm import tqdm

from .. import __version__
from ..color import gray_from_rgb
from ..errors import AerocolorError, ImageReadError
from ..imageio import atomic_write
from .colorizer import COLOUR_CHUNK, DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_TILE, BlankTest, Colorizer
from .generator import NormStats
from .journal import RowJournal, file_checksum
from .reference import Grid, Reference, ReferenceSpec

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k", ".vrt", ".img")
STRETCH_SAMPLE = 1024  # longest side of the decimated read that percentile stretches come from
BLOCK = 512  # output GeoTIFF tile size
FINISH_ROWS = 512  # rows per block when resampling the result back to the input grid
PREVIEW_SIDE = 2048  # longest side of --compare previews of rasters
GDAL_CACHE_MIN = 16 << 20  # bytes; GDAL's block cache would otherwise grow to 5% of the memory
GDAL_CACHE_MAX = 512 << 20  # bytes (rasterio reads an integer GDAL_CACHEMAX as bytes)


@dataclass(frozen=True)
class RasterOptions:
    """How a raster is read and written."""

    band: int | None = None  # 1-based; None: luminance of bands 1-3 when there are 3+, else band 1
    stretch: str = "auto"  # auto (percentiles for data deeper than 8 bits), percentile, none
    percentiles: tuple[float, float] = (0.5, 99.5)
    value_range: tuple[float, float] | None = None  # a stretch given (shared by a group), not measured
    cog: bool = False
    match_resolution: bool = False
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH
    compress: str = "deflate"


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def raster_output_path(path: Path, out_dir: Path, suffix: str = "_color") -> Path:
    return out_dir / f"{path.stem}{suffix}.tif"


class GrayRaster:
    """Windowed gray reads of a raster: the chosen band or the luminance of bands 1-3, scaled
    to [0, 1] (full range for 8-bit, a percentile stretch otherwise), nodata filled with the
    raster's median gray so that it does not pull the colours of its neighbours."""

    def __init__(self, src, opts: RasterOptions, name: str):
        self.src, self.name = src, name
        self.lock = threading.RLock()  # the reader and writer threads share the dataset
        if opts.band is not None and not 1 <= opts.band <= src.count:
            raise AerocolorError(f"{name}: no band {opts.band} (it has {src.count}); "
                                 f"choose --band 1..{src.count}")
        self.bands = [opts.band] if opts.band else ([1, 2, 3] if src.count >= 3 else [1])
        self.lo, self.hi = self._value_range(opts)
        sample = self.overview()
        self.fill = float(np.median(sample.compressed())) if sample.count() else 0.5

    def _value_range(self, opts: RasterOptions) -> tuple[float, float]:
        dtype = np.dtype(self.src.dtypes[self.bands[0] - 1])
        if opts.stretch not in ("auto", "percentile", "none"):
            raise AerocolorError(
                f"unknown stretch {opts.stretch!r}: choose auto, percentile or none")
        if opts.value_range is not None:
            return opts.value_range
        if opts.stretch == "percentile" or (opts.stretch == "auto" and dtype != np.uint8):
            values = self._sample_bands().compressed()
            if values.size == 0:
                raise AerocolorError(f"{self.name}: no valid pixels (all nodata)")
            lo, hi = np.percentile(values, opts.percentiles)
            return float(lo), float(max(hi, lo + 1e-6))
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return float(max(info.min, 0)), float(info.max)
        return 0.0, 1.0

    def _sample_bands(self) -> np.ma.MaskedArray:
        scale = max(1.0, max(self.src.height, self.src.width) / STRETCH_SAMPLE)
        shape = (len(self.bands), max(1, round(self.src.height / scale)),
                 max(1, round(self.src.width / scale)))
        data = self.src.read(self.bands, out_shape=shape, masked=True,
                             resampling=Resampling.nearest).astype(np.float32)
        return np.ma.masked_invalid(data)  # NaN no-data without a nodata tag counts as no-data

    def overview(self) -> np.ma.MaskedArray:
        """The whole raster as gray in [0, 1], read at reduced resolution (longest side about
        ``STRETCH_SAMPLE``), masked where there is no data."""
        data = self._sample_bands()
        gray = self._to_gray(data.filled(self.lo))
        return np.ma.masked_array(gray, mask=np.ma.getmaskarray(data).any(axis=0))

    def _to_gray(self, data: np.ndarray) -> np.ndarray:
        x = data.astype(np.float32)  # then in place: a strip of a wide raster is tens of MB
        x -= np.float32(self.lo)
        x /= np.float32(self.hi - self.lo)
        np.clip(x, 0.0, 1.0, out=x)
        if x.shape[0] == 3:
            return gray_from_rgb(torch.from_numpy(x)[None])[0, 0].numpy()
        return x[0]

    def valid(self, top: int, left: int, height: int, width: int,
              data: np.ndarray | None = None) -> np.ndarray:
        with self.lock:
            return valid_mask(self.src, self.bands, Window(left, top, width, height), data)

    def blank_test(self) -> BlankTest | None:
        """Whether a window holds no valid pixel (its tiles need no network: their output is
        no-data); None for a raster whose every pixel is valid."""
        flags = [self.src.mask_flag_enums[b - 1] for b in self.bands]
        if all(MaskFlags.all_valid in f for f in flags) and np.dtype(self.src.dtypes[self.bands[0] - 1]).kind != "f":
            return None
        return lambda top, left, height, width: not self.valid(top, left, height, width).any()

    def read(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        with self.lock:
            data = self.src.read(self.bands, window=Window(left, top, width, height))
            valid = self.valid(top, left, height, width, data)
        return np.where(valid, self._to_gray(data), np.float32(self.fill))


def valid_mask(src, bands: list[int], window: Window | None = None, data: np.ndarray | None = None
               ) -> np.ndarray:
    """True where every band holds data: not masked (nodata value or mask band) and, in a float
    raster, finite (NaN no-data often comes without a nodata tag). ``data``: the bands already read
    for ``window``, so float rasters are not read twice."""
    ok = (src.read_masks(bands, window=window) > 0).all(axis=0)
    if np.dtype(src.dtypes[bands[0] - 1]).kind != "f":
        return ok
    data = src.read(bands, window=window) if data is None else data
    return ok & np.isfinite(data).all(axis=0)


def open_raster(path: Path):
    if not Path(path).exists():
        raise ImageReadError(f"{path}: no such file; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as e:
        raise ImageReadError(f"{path}: not a raster GDAL can read ({e}); check the file") from None


def output_profile(src, bands: list[int], compress: str) -> tuple[dict, bool]:
    """The output GeoTIFF's profile (RGB, same grid and nodata) and whether it needs a mask."""
    dtype = "uint16" if src.dtypes[bands[0] - 1] == "uint16" else "uint8"
    nodata, top = src.nodata, np.iinfo(dtype).max
    if nodata is not None and not (float(nodata).is_integer() and 0 <= nodata <= top):
        nodata = None  # not representable in the output: a mask carries it instead
    flags = src.mask_flag_enums[bands[0] - 1]
    has_mask = MaskFlags.all_valid not in flags and (nodata is None
                                                     or MaskFlags.nodata not in flags)
    has_mask |= np.dtype(src.dtypes[bands[0] - 1]).kind == "f"  # NaN no-data needs no nodata tag
    profile = {
        "driver": "GTiff", "width": src.width, "height": src.height, "count": 3, "dtype": dtype,
        "crs": src.crs, "transform": src.transform, "nodata": nodata, "tiled": True,
        "blockxsize": BLOCK, "blockysize": BLOCK, "compress": compress, "predictor": 2,
        "photometric": "RGB", "interleave": "pixel", "BIGTIFF": "IF_SAFER",
    }
    return profile, has_mask


def quantize(colour: np.ndarray, valid: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """hxWx3 colour in [0, 1] -> (3,h,W) integers; invalid pixels get nodata, and valid ones that
    happen to equal it are nudged by one so they do not become holes."""
    top = np.iinfo(dtype).max
    out = np.moveaxis((np.clip(colour, 0, 1) * top + 0.5).astype(dtype), -1, 0)
    if nodata is not None:
        nd = int(nodata)
        out[(out == nd) & valid] = nd + 1 if nd < top else nd - 1
        out[:, ~valid] = nd
    return out


def ground_resolution(src, name: str) -> float:
    """Metres per pixel of a raster in a projected CRS."""
    if src.crs is None or not src.crs.is_projected:
        raise AerocolorError(f"{name}: --match-resolution needs a raster in a projected CRS "
                             "(metres); reproject it first or drop --match-resolution")
    factor = src.crs.linear_units_factor[1]
    t = src.transform
    return math.sqrt(abs(t.a * t.e - t.b * t.d)) * factor


def model_grid(src, model_res: float, name: str) -> WarpedVRT:
    """A virtual, lazily resampled view of ``src`` at the model's ground resolution."""
    scale = model_res / ground_resolution(src, name)
    width, height = max(1, round(src.width / scale)), max(1, round(src.height / scale))
    transform = src.transform @ src.transform.scale(src.width / width, src.height / height)
    resampling = Resampling.average if scale > 1 else Resampling.bilinear
    return WarpedVRT(src, crs=src.crs, transform=transform, width=width, height=height,
                     resampling=resampling)


class ReadAhead:
    """A gray reader that serves the reads of ``plan`` (in order) from a thread that keeps one
    read ahead, so the next strip is read while the network runs; other reads go straight
    through. Use as a context manager."""

    def __init__(self, read: Callable[..., np.ndarray], plan: list[tuple[int, int, int, int]]):
        self.read, self.plan, self.k = read, plan, 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="aerocolor-read")
        self.ahead: Future | None = None

    def __call__(self, *window: int) -> np.ndarray:
        if self.k >= len(self.plan) or tuple(window) != self.plan[self.k]:
            return self.read(*window)
        current = self.ahead or self.pool.submit(self.read, *window)
        self.k += 1
        self.ahead = self.pool.submit(self.read, *self.plan[self.k]) if self.k < len(self.plan) else None
        return current.result()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class WriteBehind:
    """Runs ``consume(item)`` for each item put, in order, in a thread: the block before is
    converted and written while the caller computes the next one, and no more than those two are
    held (``threaded`` False: at once, in the caller). Its errors are raised in the caller."""

    def __init__(self, consume: Callable, threaded: bool = True):
        self.consume = consume
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="aerocolor-write") if threaded else None
        self.last: Future | None = None

    def put(self, item) -> None:
        if self.pool is None:
            self.consume(item)
            return
        if self.last is not None:
            self.last.result()
        self.last = self.pool.submit(self.consume, item)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.pool is None:
            return
        try:  # the block in hand is finished (and journaled) even after an error
            if self.last is not None:
                self.last.result()
        except BaseException:
            if exc_type is None:
                raise
        finally:
            self.pool.shutdown(wait=True)


def blocks_on_grid(colorizer: Colorizer, gray: GrayRaster, opts: RasterOptions, progress,
                   z: torch.Tensor | None, reference: Reference | None = None, stats: NormStats = None,
                   first_row: int = 0, read=None) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(top, gray rows, raw rows) of the blended output on the gray raster's own grid, from
    tile row ``first_row`` on."""
    yield from colorizer.blend_tiles(read or gray.read, gray.src.height, gray.src.width, opts.tile,
                                     opts.overlap, z, opts.batch_size, progress, reference, stats,
                                     gray.blank_test(), first_row)


# converts a block (top, gray rows, raw rows) into the arrays written: [bands] or [bands, mask]
BlockArrays = Callable[[int, torch.Tensor, torch.Tensor], list[np.ndarray]]


def write_arrays(dst, top: int, arrays: list[np.ndarray]) -> None:
    win = Window(0, top, arrays[0].shape[-1], arrays[0].shape[-2])
    dst.write(arrays[0], window=win)
    if len(arrays) > 1:
        dst.write_mask(arrays[1], window=win)


def write_blocks(path: str, profile: dict, blocks, to_arrays: BlockArrays,
                 journal: RowJournal | None = None, threaded: bool = True,
                 tags: dict | None = None) -> None:
    """A new GeoTIFF at ``path`` from the journal's finished blocks, then from ``blocks``, each
    converted, journaled and written in a writer thread. The same blocks give the same bytes,
    whichever of them came from the journal."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        for top, arrays in journal.records() if journal is not None else ():
            write_arrays(dst, top, arrays)

        def finish(block: tuple[int, torch.Tensor, torch.Tensor]) -> None:
            arrays = to_arrays(*block)
            if journal is not None:
                journal.append(block[0], arrays)
            write_arrays(dst, block[0], arrays)

        with WriteBehind(finish, threaded) as writer:
            for block in blocks:
                writer.put(block)
        if tags:
            dst.update_tags(**tags)


def raw_profile(src, channels: int) -> dict:
    """A float32 GeoTIFF on ``src``'s grid for raw network output (an intermediate)."""
    return {"driver": "GTiff", "width": src.width, "height": src.height, "count": channels,
            "dtype": "float32", "crs": src.crs, "transform": src.transform, "tiled": True,
            "blockxsize": BLOCK, "blockysize": BLOCK, "BIGTIFF": "IF_SAFER"}


def raw_arrays(top: int, gray: torch.Tensor, raw: torch.Tensor) -> list[np.ndarray]:
    return [raw[0].cpu().numpy()]


def colour_arrays(colorizer: Colorizer, gray: GrayRaster, profile: dict, has_mask: bool
                  ) -> BlockArrays:
    """Blocks -> quantized colour bands (and mask), converted a few columns at a time into one
    preallocated array."""
    dtype, nodata = profile["dtype"], profile["nodata"]

    def convert(top: int, g: torch.Tensor, raw: torch.Tensor) -> list[np.ndarray]:
        rows, width = g.shape[-2], g.shape[-1]
        valid = gray.valid(top, 0, rows, width)
        out = np.empty((3, rows, width), dtype)
        for c in range(0, width, COLOUR_CHUNK):
            cols = slice(c, c + COLOUR_CHUNK)
            out[:, :, cols] = quantize(colorizer.colour(raw[..., cols], g[..., cols]),
                                       valid[:, cols], dtype, nodata)
        return [out, valid.astype(np.uint8) * 255] if has_mask else [out]

    return convert


def blocks_resampled_back(colorizer: Colorizer, gray: GrayRaster, raw_path: str,
                          ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(top, gray rows, raw rows) on the input grid, the raw output resampled (bilinear) from
    the model grid; the input's own full-resolution gray is kept."""
    src = gray.src
    with rasterio.open(raw_path) as raw_src, WarpedVRT(
        raw_src, crs=src.crs, transform=src.transform, width=src.width, height=src.height,
        resampling=Resampling.bilinear,
    ) as back:
        for top in range(0, src.height, FINISH_ROWS):
            rows = min(FINISH_ROWS, src.height - top)
            raw = back.read(window=Window(0, top, src.width, rows))
            yield (top, colorizer.gray_tensor(gray.read(top, 0, rows, src.width)),
                   torch.from_numpy(raw)[None].to(colorizer.device))


def job_key(colorizer: Colorizer, path: Path, opts: RasterOptions, z: torch.Tensor | None,
            reference: Reference | None = None, stats: NormStats = None) -> dict | None:
    """All that a raster's output depends on, for its journal; None (no resuming) when the
    model is not a file whose checksum can be taken."""
    model = Path(colorizer.source) if colorizer.source else None
    if model is None or not model.is_file():
        return None
    stat = path.stat()
    return {"input": str(path.resolve()), "input_bytes": stat.st_size,
            "input_mtime_ns": stat.st_mtime_ns, "model_sha256": file_checksum(model),
            "backend": type(colorizer.generator).__name__, "device": str(colorizer.device),
            "precision": getattr(colorizer.generator, "precision", "float32"), "chroma": colorizer.chroma,
            "cut_tile": colorizer.cut,
            "options": asdict(opts), "z": None if z is None else z.flatten().tolist(),
            "reference": None if reference is None else content_digest(
                [reference.coarse, reference.palette, reference.strength]),
            "stats": None if stats is None else content_digest(stats),
            "versions": [__version__, torch.__version__, rasterio.__gdal_version__]}


def content_digest(value) -> str:
    """A SHA-256 of tensors, arrays and numbers, nested in lists, tuples and dicts (what a shared
    statistics value or a reference is made of), for a journal's key."""
    digest = hashlib.sha256()

    def add(v) -> None:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):
            digest.update(f"{v.dtype}{v.shape}".encode())
            digest.update(np.ascontiguousarray(v).tobytes())
        elif isinstance(v, dict):
            for k in sorted(v):
                digest.update(repr(k).encode())
                add(v[k])
        elif isinstance(v, list | tuple):
            digest.update(f"[{len(v)}".encode())
            for item in v:
                add(item)
        else:
            digest.update(repr(v).encode())

    add(value)
    return digest.hexdigest()


def gdal_cache_bytes(src, raw: bool) -> int:
    """GDAL's block cache for streaming ``src`` (an integer is bytes to rasterio, not MB): two
    block rows of the input (a strip of rows can straddle two) and of the output with its mask
    (and of the raw model-grid intermediate when there is one), so no block is read or written
    twice, and no more."""
    block_rows = min(src.block_shapes[0][0], src.height)
    source = block_rows * src.width * sum(np.dtype(d).itemsize for d in src.dtypes)
    out_bytes = 2 if src.dtypes[0] == "uint16" else 1  # see output_profile
    output = BLOCK * src.width * (3 * out_bytes + 1 + (4 * 3 if raw else 0))
    return int(np.clip(2 * (source + output), GDAL_CACHE_MIN, GDAL_CACHE_MAX))


def to_cog(strip_path: str, out_path: str, compress: str) -> None:
    """Copy a GeoTIFF to a Cloud Optimized GeoTIFF (GDAL builds the overviews)."""
    from rasterio.shutil import copy

    copy(strip_path, out_path, driver="COG", COMPRESS=compress.upper(), PREDICTOR="YES",
         BLOCKSIZE=BLOCK, OVERVIEW_RESAMPLING="AVERAGE", BIGTIFF="IF_SAFER")


def colorize_raster(colorizer: Colorizer, path: Path, out: Path,
                    opts: RasterOptions = RasterOptions(), progress: bool = True,
                    z: torch.Tensor | None = None, reference: ReferenceSpec | None = None,
                    stats: NormStats = None, io_threads: bool | None = None,
                    log: Callable[[str], None] | None = None) -> Path:
    """Colorize one raster into a georeferenced RGB GeoTIFF at ``out`` (written atomically),
    following a colour ``reference`` placed on the grid it is colorized on; ``stats``: shared
    whole-input statistics instead of the raster's own.

    Finished tile rows are journaled beside ``out``: a run that was killed resumes after the last
    of them (same options, model, input, reference and statistics; else it starts over), and the
    result is the same file. ``io_threads``: read and write in threads beside the network (same
    output either way); default: on a GPU only (on a 2-core CPU the threads took cores from the
    network: slower)."""
    name = str(path)
    if io_threads is None:
        io_threads = colorizer.device.type != "cpu"
    say = log or (lambda _msg: None)
    with ExitStack() as stack:
        src = stack.enter_context(open_raster(path))
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(src, opts.match_resolution)))
        grid = src
        if opts.match_resolution:
            model_res = colorizer.config.model.ground_resolution
            if model_res is None:
                raise AerocolorError(f"{colorizer.source}: the model records no ground resolution; "
                                     "drop --match-resolution")
            grid = stack.enter_context(model_grid(src, model_res, name))
        model_gray = GrayRaster(grid, opts, name)
        gray = model_gray if grid is src else GrayRaster(src, opts, name)
        ref = None if reference is None else reference.for_grid(
            Grid.of(grid), colorizer.config.model.reference.scale, name)
        tops, lefts, _, _ = colorizer.plan(grid.height, grid.width, opts.tile, opts.overlap)
        n_rows, n_cols = len(tops), len(lefts)
        key = job_key(colorizer, path, opts, z, ref, stats)
        journal = stack.enter_context(RowJournal(out, key)) if key is not None else None
        done = journal.blocks_done if journal is not None else 0
        if journal is not None and journal.restarted:
            say(f"{path.name}: the unfinished output was made with other options, model or input; "
                "starting over")
        if done:
            say(f"{path.name}: resuming an interrupted run, {done} of {n_rows} tile rows already done")
        bar = stack.enter_context(tqdm(total=n_rows * n_cols, initial=done * n_cols, unit="tile",
                                       desc=path.name, disable=not progress))
        read = model_gray.read
        if io_threads:
            plan = colorizer.row_reads(grid.height, grid.width, opts.tile, opts.overlap, done)
            read = stack.enter_context(ReadAhead(model_gray.read, plan))
        blocks = blocks_on_grid(colorizer, model_gray, opts, bar.update, z, ref, stats, done, read)
        profile, has_mask = output_profile(gray.src, gray.bands, opts.compress)
        to_colour = colour_arrays(colorizer, gray, profile, has_mask)

        def write(tmp: str) -> None:
            final = tmp
            if opts.cog:
                final, tmp = tmp, f"{tmp}.strips.tif"
            try:
                if grid is src:
                    write_blocks(tmp, profile, blocks, to_colour, journal, io_threads, src.tags())
                else:
                    raw_path = f"{tmp}.model_grid.tif"
                    try:
                        write_blocks(raw_path, raw_profile(grid, colorizer.generator.out_channels),
                                     blocks, raw_arrays, journal, io_threads)
                        write_blocks(tmp, profile, blocks_resampled_back(colorizer, gray, raw_path),
                                     to_colour, None, io_threads, src.tags())
                    finally:
                        _remove(raw_path)
                if opts.cog:
                    to_cog(tmp, final, opts.compress)
            finally:
                if opts.cog:
                    _remove(tmp)

        result = atomic_write(out, write)
        if journal is not None:
            journal.discard()
        return result


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def raster_preview(src_path: Path, colour_path: Path, opts: RasterOptions,
                   max_side: int = PREVIEW_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(gray input, colour output) of a colorized raster as float arrays in [0, 1], decimated to
    at most ``max_side`` pixels on the long side (GDAL reads overviews where the files have them);
    no-data areas are white."""
    with open_raster(src_path) as src, rasterio.open(colour_path) as out:
        gray = GrayRaster(src, opts, str(src_path))
        scale = max(1.0, max(src.height, src.width) / max_side)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        data = src.read(gray.bands, out_shape=(len(gray.bands), *shape), masked=True,
                        resampling=Resampling.average)
        g = gray._to_gray(data.filled(gray.lo))
        colour = out.read([1, 2, 3], out_shape=(3, *shape), masked=True, resampling=Resampling.average)
        top = float(np.iinfo(colour.dtype).max) if np.issubdtype(colour.dtype, np.integer) else 1.0
        rgb = np.clip(colour.filled(top).astype(np.float32) / top, 0, 1).transpose(1, 2, 0)
        g = np.where(np.ma.getmaskarray(data).any(axis=0), 1.0, g).astype(np.float32)
    return g, rgb
