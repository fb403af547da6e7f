"""What one worker does, whichever engine runs it: load the model once, then sample inputs for
shared statistics, pool a group's statistics, and colorize files one at a time.

The local engine runs one :class:`ArchiveWorker` in this process; the Ray engine runs one per Ray
actor. Both call the same :func:`~aerocolor.colorize.colorize_one` as ``aerocolor colorize``, so
the engines write the same bytes.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
import torch

from ..checkpoint import load_checkpoint
from ..colorize import colorize_one, latent_variants, to_gray
from ..errors import AerocolorError
from ..imageio import read_image, set_pixel_limit
from ..infer import load_colorizer
from ..infer.colorizer import MIN_SIDE, array_reader, pad_to_multiple, spread_blocks
from ..infer.generator import NormStats
from ..infer.raster import GDAL_CACHE_MAX, GrayRaster, RasterOptions, is_raster, model_grid, open_raster
from .manifest import file_sha256

# Whole-input statistics in a form that crosses processes: one (mean, var) pair of arrays per
# whole-input layer, in the network's order (torch keys them by module, which does not travel).
PortableStats = list[tuple[np.ndarray, np.ndarray]] | np.ndarray | None
VALUE_SAMPLE = 1 << 16  # raw values per input that a group's shared stretch comes from


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker needs to colorize like ``aerocolor colorize`` would (picklable)."""

    out_dir: Path
    model: Path | None = None
    device: str = "cpu"
    backend: str = "auto"
    raster: RasterOptions = field(default_factory=RasterOptions)
    compare: bool = False
    samples: int = 0
    style: Path | None = None
    seed: int = 0
    suffix: str = "_color"
    max_pixels: int | None = None  # --max-pixels, for worker processes that did not parse it
    chroma: float | None = None  # --chroma (None: the model's own)
    precision: str = "auto"  # --precision of the torch backend


def error_reason(e: BaseException) -> str:
    """One line saying why a file failed."""
    if isinstance(e, AerocolorError):
        return str(e)
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class ArchiveWorker:
    """One model loaded once, serving many files."""

    def __init__(self, spec: WorkSpec, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        if spec.max_pixels is not None:
            set_pixel_limit(spec.max_pixels)
        self.spec = spec
        self.colorizer = load_colorizer(spec.model, spec.device, spec.backend, spec.chroma, spec.precision)
        self.variants = latent_variants(self.colorizer, spec.samples, spec.style, spec.seed) or [("", None)]

    def pid(self) -> int:
        return os.getpid()

    def model_info(self) -> dict:
        """What the STAC items and the manifest say about the model: method, config, runtime and,
        for a checkpoint, its version (the aerocolor that wrote it and the training step)."""
        cfg = self.colorizer.config
        info = {"method": cfg.model.method, "config": cfg.model_dump(mode="json"),
                "backend": type(self.colorizer.generator).__name__}
        source = Path(self.colorizer.source)
        if source.suffix.lower() != ".onnx" and source.is_file():  # ONNX files carry no training step
            ckpt = load_checkpoint(source)
            info["version"] = {"aerocolor": ckpt.get("aerocolor_version"), "step": ckpt.get("step")}
        return info

    def measures_stretch(self, path: str) -> bool:
        """Whether colorizing this input measures a percentile stretch of its own (a raster
        deeper than 8 bits, or --stretch percentile)."""
        opts = self.spec.raster
        if not is_raster(Path(path)) or opts.stretch == "none":
            return False
        with open_raster(Path(path)) as src:
            band = opts.band or 1
            return opts.stretch == "percentile" or np.dtype(src.dtypes[min(band, src.count) - 1]) != np.uint8

    def raster_options(self, path: str, value_range: tuple[float, float] | None) -> RasterOptions:
        """The job's raster options, with a group's shared stretch where the input would measure one."""
        if value_range is None or not self.measures_stretch(path):
            return self.spec.raster
        return replace(self.spec.raster, value_range=value_range)

    def values(self, path: str, count: int = VALUE_SAMPLE) -> np.ndarray | None:
        """Up to ``count`` valid raw values of an input that measures its stretch (else None), for
        a stretch shared by its group."""
        if not self.measures_stretch(path):
            return None
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MAX), open_raster(Path(path)) as src:
            gray = GrayRaster(src, replace(self.spec.raster, stretch="none"), path)
            data = gray._sample_bands().compressed()
        return data[np.linspace(0, data.size - 1, min(count, data.size)).astype(int)] if data.size else None

    def sample(self, path: str, blocks: int, value_range: tuple[float, float] | None = None) -> list[np.ndarray]:
        """Up to ``blocks`` disjoint gray squares (at most NORM_SAMPLE_SIDE a side) spread across
        an input, read as colorizing it would read it (band, stretch, model grid)."""
        with ExitStack() as stack:
            p = Path(path)
            if is_raster(p):
                stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MAX))
                grid = src = stack.enter_context(open_raster(p))
                opts = self.raster_options(path, value_range)
                if opts.match_resolution and self.colorizer.config.model.ground_resolution:
                    grid = stack.enter_context(model_grid(src, self.colorizer.config.model.ground_resolution, path))
                read, h, w = GrayRaster(grid, opts, path).read, grid.height, grid.width
            else:
                gray = to_gray(read_image(p))
                read, (h, w) = array_reader(gray), gray.shape
            return [np.asarray(read(*win), np.float32) for win in spread_blocks(h, w, blocks)]

    @torch.no_grad()
    def group_stats(self, blocks: list[np.ndarray]) -> PortableStats:
        """Whole-input statistics pooled over the blocks of every input of a group, as if the
        group were one image (blocks are centre-cropped to the smallest among them)."""
        generator = self.colorizer.generator
        if not generator.instance_norm or not blocks:
            return None
        h, w = min(b.shape[0] for b in blocks), min(b.shape[1] for b in blocks)
        tops_lefts = [((b.shape[0] - h) // 2, (b.shape[1] - w) // 2) for b in blocks]
        crops = [b[t:t + h, lft:lft + w] for b, (t, lft) in zip(blocks, tops_lefts, strict=True)]
        z = self.colorizer.latent(None)

        def batch(some: list[np.ndarray]):
            tiles = torch.cat([self.colorizer.gray_tensor(c) for c in some])
            tiles, _, _ = pad_to_multiple(tiles, generator.size_multiple, MIN_SIDE)
            return tiles, None if z is None else z.expand(len(some), -1), None

        return self.portable(self.colorizer.pooled_stats(crops, h * w, batch, z))

    def whole_input_layers(self) -> list:
        from ..infer.torch_backend import instance_norms

        return instance_norms(self.colorizer.method)

    def portable(self, stats: NormStats) -> PortableStats:
        if not isinstance(stats, dict):
            return stats  # the ONNX runtime's statistics are one array already
        return [tuple(s.detach().cpu().numpy() for s in stats[m]) for m in self.whole_input_layers()]

    def local(self, stats: PortableStats) -> NormStats:
        if stats is None or isinstance(stats, np.ndarray):
            return stats
        dev = self.colorizer.device
        return {m: tuple(torch.from_numpy(s).to(dev) for s in pair)
                for m, pair in zip(self.whole_input_layers(), stats, strict=True)}

    def colorize(self, path: str, stats: PortableStats = None,
                 value_range: tuple[float, float] | None = None) -> dict:
        """Colorize one input, with a group's shared statistics and stretch where given; never
        raises for a bad file: the result says done or failed, why, and the outputs (named
        relative to the output folder) with their SHA-256."""
        start = time.perf_counter()
        result = {"input": path, "pid": os.getpid()}
        spec = self.spec
        warnings: list[str] = []
        try:
            opts = self.raster_options(path, value_range)
            if opts.value_range is not None:
                result["stretch"] = list(opts.value_range)
            written = colorize_one(self.colorizer, Path(path), spec.out_dir, spec.compare, spec.raster.tile,
                                   spec.raster.overlap, False, spec.suffix, warnings.append, False,
                                   self.variants, opts, stats=self.local(stats))
            result.update(status="done", outputs=[
                {"path": os.path.relpath(p, spec.out_dir), "sha256": file_sha256(p),
                 "role": "preview" if Path(p).stem.endswith("_compare") else "colour"} for p in written])
        except Exception as e:  # one bad file must not stop an archive: it is reported and skipped
            result.update(status="failed", error=error_reason(e))
            if not isinstance(e, AerocolorError | OSError):
                result["traceback"] = traceback.format_exc(limit=-3)
        if warnings:
            result["warnings"] = warnings
        result.update(seconds=round(time.perf_counter() - start, 3), peak_rss_mb=round(peak_rss_mb(), 1))
        return result
