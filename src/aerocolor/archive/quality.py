"""How much the colours of overlapping frames disagree: the measure behind ``--consistent``.

Neighbouring frames of a flight overlap; where they do, one place is colorized twice, once in
each frame's context. The mean CIEDE2000 between the two versions over every overlap says how
visible the frame edges of a mosaic are (0: identical colours).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window, from_bounds
from skimage.color import deltaE_ciede2000, rgb2lab

from ..errors import AerocolorError


def cut_frames(raster: Path, out_dir: Path, size: int, overlap: int) -> list[Path]:
    """Cut a georeferenced raster into ``size`` px square frames that overlap their neighbours by
    ``overlap`` px (the last row and column shifted inwards to end at the border), written as
    GeoTIFFs on the raster's grid: a stand-in for the overlapping frames of a survey flight."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    with rasterio.open(raster) as src:
        if size > min(src.width, src.height) or not 0 <= overlap < size:
            raise AerocolorError(f"{raster}: frames of {size} px overlapping by {overlap} px do not fit "
                                 f"its {src.width}x{src.height} pixels")

        def starts(n: int) -> list[int]:
            return sorted(set(range(0, n - size, size - overlap)) | {n - size})

        profile = {**src.profile, "width": size, "height": size, "tiled": False, "compress": "deflate"}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        for r, top in enumerate(starts(src.height)):
            for c, left in enumerate(starts(src.width)):
                win = Window(left, top, size, size)
                path = out_dir / f"{raster.stem}_r{r}c{c}.tif"
                with rasterio.open(path, "w", **{**profile, "transform": src.window_transform(win)}) as dst:
                    dst.write(src.read(window=win))
                frames.append(path)
    return frames


def read_overlap(path: Path, bounds: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """RGB in [0, 1] (h,w,3) of a colour output inside ``bounds``, and where it holds data."""
    with rasterio.open(path) as src:
        win = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
        rgb = src.read([1, 2, 3], window=win).transpose(1, 2, 0)
        valid = src.read_masks(1, window=win) > 0
    return rgb.astype(np.float32) / np.iinfo(rgb.dtype).max, valid


def overlap_difference(outputs: list[Path]) -> tuple[float, int]:
    """(mean CIEDE2000, overlapping pairs) between every two georeferenced colour outputs that
    overlap, over their shared valid pixels; the pixel-weighted mean over all overlaps."""
    bounds = {}
    for p in outputs:
        with rasterio.open(p) as src:
            bounds[p] = src.bounds
    total, pixels, pairs = 0.0, 0, 0
    for a, b in combinations(outputs, 2):
        ba, bb = bounds[a], bounds[b]
        shared = (max(ba.left, bb.left), max(ba.bottom, bb.bottom), min(ba.right, bb.right), min(ba.top, bb.top))
        if shared[0] >= shared[2] or shared[1] >= shared[3]:
            continue
        (ra, va), (rb, vb) = read_overlap(a, shared), read_overlap(b, shared)
        h, w = min(ra.shape[0], rb.shape[0]), min(ra.shape[1], rb.shape[1])
        valid = va[:h, :w] & vb[:h, :w]
        if not valid.any():
            continue
        de = deltaE_ciede2000(rgb2lab(ra[:h, :w]), rgb2lab(rb[:h, :w]))
        total += float(de[valid].sum())
        pixels += int(valid.sum())
        pairs += 1
    return (total / pixels if pixels else 0.0), pairs
