"""Restoring scans: detect damage tile by tile, fill it, and stream the result to a file that
keeps the input's size, bands, bit depth, georeference and nodata, with the damage mask beside it.

Only detected pixels (and a one-pixel rim) are rewritten; every other pixel is copied bit for
bit, so a clean scan comes out unchanged. Rasters of any size are handled in strips of rows
read with a halo above and below, so memory stays bounded by one strip.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.enums import MaskFlags
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from scipy.ndimage import find_objects, label
from tqdm import tqdm

from ..data.damage import DAMAGE_TYPES, LABEL
from ..errors import AerocolorError, ConfigError
from ..imageio import atomic_write
from ..infer.generator import pick_device
from ..infer.raster import GDAL_CACHE_MAX, RASTER_SUFFIXES, GrayRaster, RasterOptions, open_raster
from .borders import area_rows, picture_area
from .fill import choose_fill, fill_region
from .model import RestoreModel, load_restore_model
from .nets import SIZE_MULTIPLE, halo_tiles, in_crop, inference_copy

BORDER_LABEL = len(DAMAGE_TYPES) + 1  # mask code of the frame border set to nodata
MASK_CODES = {0: "clean", **{v: k for k, v in LABEL.items()}, BORDER_LABEL: "frame border (nodata)"}
FILL_METHODS = ("auto", "classical", "network")
DEFAULT_DAMAGE_P = 0.03  # see strength_threshold
HOLE_TONE_TOLERANCE = 2 / 255  # a missing area is one tone, to within this (see grow_holes)
HOLE_FLAT_SHARE = 0.8  # share of a detected hole's pixels that must lie within that tolerance
HOLE_SATURATION = 3 / 255  # ... and that tone within this of black or white


@dataclass(frozen=True)
class RestoreOptions:
    repair: tuple[str, ...] = DAMAGE_TYPES
    strength: float = 0.5  # 0 repairs almost nothing, 1 anything that may be damage
    mask_borders: bool = False
    fill: str = "auto"
    tile: int = 512
    halo: int = 32
    strip: int = 512
    device: str = "auto"


def parse_repair(spec: str) -> tuple[str, ...]:
    """'dust,scratches' or 'all' -> damage type names; the error names --repair and the choices."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return DAMAGE_TYPES
    bad = [n for n in names if n not in DAMAGE_TYPES]
    if bad or not names:
        raise ConfigError(f"--repair {spec!r}: choose from {', '.join(DAMAGE_TYPES)} (comma-separated) or all")
    return tuple(n for n in DAMAGE_TYPES if n in names)


def check_options(opts: RestoreOptions) -> None:
    if not 0 <= opts.strength <= 1:
        raise ConfigError(f"--strength {opts.strength}: give a value from 0 (repair nothing) to 1")
    if opts.fill not in FILL_METHODS:
        raise ConfigError(f"--fill {opts.fill!r}: choose {', '.join(FILL_METHODS)}")
    if opts.tile < 32 or not 0 <= opts.halo < opts.tile // 2:
        raise ConfigError(f"--tile {opts.tile}: tiles must be at least 32 pixels and more than twice the halo "
                          f"({opts.halo})")


def strength_threshold(strength: float, damage_p: float = DEFAULT_DAMAGE_P) -> float:
    """The damage probability above which a pixel is repaired: 1 - P ** (2 (1 - strength)), so
    strength 0.5 repairs pixels more than 1 - P likely damaged, 1 repairs anything, 0 almost
    nothing. P is ``DEFAULT_DAMAGE_P`` (measured to leave clean photos nearly unchanged) or the
    model's own per damage type (its notes' ``damage_p``, see scripts/calibrate_restore.py)."""
    return float(max(0.0, 1 - damage_p ** (2 * (1 - strength))))


def type_thresholds(strength: float, damage_p: dict[str, float] | None = None) -> torch.Tensor:
    """The threshold of each label (index 0, clean, unused) at ``strength``."""
    damage_p = damage_p or {}
    return torch.tensor([1.0] + [strength_threshold(strength, damage_p.get(k, DEFAULT_DAMAGE_P))
                                 for k in DAMAGE_TYPES])


class Restorer:
    """A restoration model ready to run: detection with tiles and halos, and fills."""

    def __init__(self, model: RestoreModel, opts: RestoreOptions = RestoreOptions()):
        check_options(opts)
        if model.detector is None:
            raise AerocolorError("the restoration model has no damage detector; train one with "
                                 "scripts/train_restore.py --which detector")
        self.opts = opts
        self.device = pick_device(opts.device)
        self.detector = inference_copy(model.detector, self.device)
        self.inpainter = None if model.inpainter is None else inference_copy(model.inpainter, self.device)
        # the damage types the net fills under --fill auto (measured better than Telea on them)
        self.network_types = [t for t in model.notes.get("fill_network_types", []) if t in LABEL]
        self.inpaint_base = model.inpaint_base
        self.damage_p = dict(model.notes.get("damage_p", {}))
        self.thresholds = type_thresholds(opts.strength, self.damage_p).to(self.device)
        self.keep = torch.tensor([0] + [LABEL[n] for n in opts.repair], device=self.device)

    @classmethod
    def load(cls, path: Path | None = None, opts: RestoreOptions = RestoreOptions()) -> Restorer:
        return cls(load_restore_model(path), opts)

    @torch.no_grad()
    def damage_probabilities(self, gray: np.ndarray) -> torch.Tensor:
        """Gray HxW in [0, 1] -> class probabilities (1 + types, H, W), tile by tile with a halo
        cropped away, so results do not depend on where tiles fall."""
        h, w = gray.shape
        g = torch.from_numpy(np.ascontiguousarray(gray, np.float32)).to(self.device)
        out = torch.empty(1 + len(DAMAGE_TYPES), h, w, device=self.device)
        for core, crop in halo_tiles(h, w, self.opts.tile, self.opts.halo):
            x = g[crop][None, None]
            ph, pw = -x.shape[-2] % SIZE_MULTIPLE, -x.shape[-1] % SIZE_MULTIPLE
            pad_mode = "reflect" if min(x.shape[-2:]) > max(ph, pw) else "replicate"
            probs = self.detector(F.pad(x, (0, pw, 0, ph), mode=pad_mode)).softmax(1)[0]
            out[(slice(None), *core)] = probs[(slice(None), *in_crop(core, crop))]
        return out

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Labels HxW uint8 of the damage to repair: 0 clean, else ``LABEL[type]``."""
        return self.labels(self.damage_probabilities(gray), gray)

    def labels(self, probs: torch.Tensor, gray: np.ndarray, strength: float | None = None) -> np.ndarray:
        """Class probabilities of ``gray`` -> labels: damage of the most likely type where the
        probability of damage exceeds that type's threshold at ``strength`` (default:
        ``--strength``), if it is to be repaired; detected holes then grow over the flat area they
        lie in (see ``grow_holes``)."""
        thresholds = self.thresholds if strength is None else type_thresholds(strength, self.damage_p).to(probs.device)
        kind = probs[1:].argmax(0) + 1
        damaged = 1 - probs[0] > thresholds[kind]
        labels = torch.where(damaged & torch.isin(kind, self.keep), kind, torch.zeros_like(kind))
        labels = labels.to(torch.uint8).cpu().numpy()
        return grow_holes(gray, labels) if "holes" in self.opts.repair else labels

    def fill(self, band: np.ndarray, mask: np.ndarray, codes: np.ndarray | None = None) -> np.ndarray:
        """``band`` with ``mask`` filled; ``codes`` (the mask codes) tell ``--fill auto`` which
        pixels are of the types the net fills (without them: Telea everywhere)."""
        network_part = None if codes is None else np.isin(codes, [LABEL[t] for t in self.network_types])
        return choose_fill(band, mask, self.inpainter, self.opts.fill, network_part, self.inpaint_base,
                           self.opts.tile, self.opts.halo)

    def restore(self, gray: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gray HxW in [0, 1] -> (restored gray, mask codes of the filled pixels)."""
        labels, fill_mask = self.damage(gray, valid)
        out = self.fill(gray, fill_mask, labels)
        return np.where(fill_mask, np.clip(out, 0, 1), gray).astype(np.float32), labels

    def damage(self, gray: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(mask codes, pixels to fill): the detected damage one pixel wider, within ``valid``."""
        return fill_region(self.detect(gray), valid)


def grow_holes(gray: np.ndarray, labels: np.ndarray, tolerance: float = HOLE_TONE_TOLERANCE) -> np.ndarray:
    """``labels`` with each detected hole grown over the connected area of its own flat tone.

    A torn corner or missing strip is one flat black or white tone (unexposed or clear film, the
    scanner bed), and the detector sees only the edge of a large one: inside, a flat area looks
    like clean ground. Each detected hole whose pixels are nearly all within ``tolerance`` of
    their median tone, black or white, takes every pixel connected to it within that tolerance;
    a hole that is not flat (a false alarm on texture) or of a mid tone (flat water or a
    rendered map area) grows nowhere."""
    seeds = labels == LABEL["holes"]
    if not seeds.any():
        return labels
    parts, _ = label(seeds, structure=np.ones((3, 3)))
    out = labels.copy()
    done: set[int] = set()
    flat_areas: dict[int, np.ndarray] = {}  # by tone in 1/255 steps: each labelled once
    for j, where in enumerate(find_objects(parts), start=1):
        if j in done:
            continue
        values = gray[where][parts[where] == j]
        tone = float(np.median(values))
        if (np.mean(np.abs(values - tone) <= tolerance) < HOLE_FLAT_SHARE
                or HOLE_SATURATION < tone < 1 - HOLE_SATURATION):
            continue
        key = round(tone * 255)
        if key not in flat_areas:
            flat_areas[key] = label(np.abs(gray - key / 255) <= tolerance, structure=np.ones((3, 3)))[0]
        flat = flat_areas[key]
        grown = np.isin(flat, np.unique(flat[(parts == j) & (flat > 0)]))
        out[grown] = LABEL["holes"]
        done.update(np.unique(parts[grown & seeds]).tolist())
    return out


def restore_strips(restorer: Restorer, read, height: int, width: int
                   ) -> Iterator[tuple[int, int, int, tuple]]:
    """(top, rows, offset, read result) of strips read with the halo; ``read(top, rows)``."""
    halo, strip = restorer.opts.halo, restorer.opts.strip
    for top in range(0, height, strip):
        t0 = max(0, top - halo)
        rows = min(strip, height - top)
        t1 = min(height, top + rows + halo)
        yield top, rows, top - t0, read(t0, t1 - t0)


def restored_path(path: Path, out_dir: Path) -> Path:
    suffix = ".tif" if path.suffix.lower() in RASTER_SUFFIXES else ".png"
    return out_dir / f"{path.stem}{suffix}"


def mask_path(path: Path, out_dir: Path) -> Path:
    return out_dir / f"{path.stem}_mask.tif"


def output_profiles(src) -> tuple[dict, dict]:
    """GeoTIFF profiles of the restored image (the input's grid, bands, type, nodata) and of its mask."""
    profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": src.count,
               "dtype": src.dtypes[0], "crs": src.crs, "transform": src.transform, "nodata": src.nodata,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "BIGTIFF": "IF_SAFER"}
    if src.count == 3:
        profile["photometric"] = "RGB"
    mask_profile = {**profile, "count": 1, "dtype": "uint8", "nodata": None}
    mask_profile.pop("photometric", None)
    return profile, mask_profile


def _to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def restore_file(restorer: Restorer, path: Path, out_dir: Path, progress: bool = True,
                 mask_dir: Path | None = None) -> tuple[Path, Path]:
    """Restore one image or raster into ``out_dir``: NAME.tif (rasters; NAME.png for other images)
    and NAME_mask.tif (uint8 codes, see ``MASK_CODES``; in ``mask_dir`` when given), both written
    atomically."""
    target, mask_target = restored_path(path, out_dir), mask_path(path, mask_dir or out_dir)
    if target.resolve() == path.resolve():
        raise AerocolorError(f"{path}: the output would overwrite the input; give another --out folder")
    opts = restorer.opts
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MAX, GDAL_TIFF_INTERNAL_MASK=True), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = open_raster(path)
        with src:
            gray = GrayRaster(src, RasterOptions(), str(path))
            scale = (gray.hi - gray.lo) or 1.0
            area = picture_area(gray.overview().filled(0.0)) if opts.mask_borders else None
            profile, mask_profile = output_profiles(src)
            source_masked = MaskFlags.all_valid not in src.mask_flag_enums[0]  # a mask band or alpha
            write_dataset_mask = (target.suffix == ".tif" and src.nodata is None
                                  and (area is not None or source_masked))

            def write_both(tmp_image: str, tmp_mask: str) -> None:
                strips = restore_strips(restorer, lambda t, n: (
                    src.read(window=Window(0, t, src.width, n)).astype(np.float32),
                    gray.read(t, 0, n, src.width), gray.valid(t, 0, n, src.width)), src.height, src.width)
                bar = tqdm(total=src.height, unit="row", desc=path.name, disable=not progress)
                with rasterio.open(tmp_image, "w", **profile) as dst, \
                        rasterio.open(tmp_mask, "w", **mask_profile) as mdst:
                    for top, rows, off, (raw, g, valid) in strips:
                        codes, fill_mask = restorer.damage(g, valid)
                        out = raw.copy()
                        for b in range(raw.shape[0]):
                            band = np.where(valid, (raw[b] - gray.lo) / scale, gray.fill)  # no NaN nodata in fills
                            filled = restorer.fill(band, fill_mask, codes)
                            out[b][fill_mask] = filled[fill_mask] * scale + gray.lo
                        out, codes, valid = out[:, off:off + rows], codes[off:off + rows], valid[off:off + rows]
                        if area is not None:
                            border = ~area_rows(area, src.height, src.width, top, rows)
                            codes[border] = BORDER_LABEL
                            out[:, border] = src.nodata if src.nodata is not None else 0
                            valid = valid & ~border
                        win = Window(0, top, src.width, rows)
                        dst.write(_to_dtype(out, profile["dtype"]), window=win)
                        if write_dataset_mask:
                            dst.write_mask(valid.astype(np.uint8) * 255, window=win)
                        mdst.write(codes[None], window=win)
                        bar.update(rows)
                    dst.update_tags(**src.tags())
                    mdst.update_tags(codes=", ".join(f"{k}={v}" for k, v in MASK_CODES.items()))
                bar.close()

            def write_image(tmp: str) -> None:
                if target.suffix == ".tif":
                    atomic_write(mask_target, lambda tmp_mask: write_both(tmp, tmp_mask))
                    return
                strip_tif = f"{tmp}.strips.tif"
                try:
                    atomic_write(mask_target, lambda tmp_mask: write_both(strip_tif, tmp_mask))
                    from rasterio.shutil import copy

                    copy(strip_tif, tmp, driver="PNG")
                finally:
                    for extra in (strip_tif, f"{tmp}.aux.xml"):
                        Path(extra).unlink(missing_ok=True)

            atomic_write(target, write_image)
    return target, mask_target


@contextmanager
def restored_inputs(inputs: list[Path], out_dir: Path, mask_borders: bool = False,
                    device: str = "auto") -> Iterator[list[Path]]:
    """``colorize --restore``: restored copies of the inputs, with the same names, in a hidden
    folder of ``out_dir`` that is removed on leaving (also after an error), to colorize instead;
    the masks go to ``out_dir``."""
    restorer = Restorer.load(None, RestoreOptions(mask_borders=mask_borders, device=device))
    work = Path(tempfile.mkdtemp(prefix=".restored-", dir=out_dir))
    try:
        yield [restore_file(restorer, p, work, mask_dir=out_dir)[0] for p in inputs]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def restore_files(restorer: Restorer, inputs: list[Path], out_dir: Path, progress: bool = True,
                  on_error=None) -> list[Path]:
    """Restore each input; with ``on_error``, a failing input is reported and the others go on."""
    written: list[Path] = []
    for path in tqdm(inputs, unit="image", desc="restore", disable=not progress or len(inputs) < 2):
        try:
            written += restore_file(restorer, path, out_dir, progress)
        except AerocolorError as e:
            if on_error is None:
                raise
            on_error(path, e)
    return written
