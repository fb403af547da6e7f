"""Finding the frame of a scanned aerial photo: the unexposed film border around the picture,
with its fiducial marks and the data strip (clock, altimeter, frame number) printed in it, and
flat no-data areas (pure black or white) reaching in from the edge."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, label, uniform_filter

EXTREME = 0.08  # darker than this or brighter than 1 - this: film border or no-data
BORDER_SHARE = 0.6  # a row or column with this share of border pixels lies in the frame border
FLAT_STD = 0.01  # no-data areas inside the picture are flat to this
MIN_NODATA_SHARE = 0.002  # flat edge areas smaller than this share of the image are left alone


def _local_std(g: np.ndarray, size: int = 5) -> np.ndarray:
    mean = uniform_filter(g, size)
    return np.sqrt(np.maximum(uniform_filter(g * g, size) - mean * mean, 0))


def _inner_span(share: np.ndarray) -> tuple[int, int]:
    """First and last index (exclusive) between the border runs at both ends of a profile."""
    n = len(share)
    lo = 0
    while lo < n and share[lo] >= BORDER_SHARE:
        lo += 1
    hi = n
    while hi > lo and share[hi - 1] >= BORDER_SHARE:
        hi -= 1
    return lo, hi


def picture_area(gray: np.ndarray) -> np.ndarray:
    """Gray HxW in [0, 1] (a decimated view of the scan) -> True on the picture itself, False on
    the frame border, its marks and data strip, and flat no-data areas touching the edge."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape
    extreme = (g < EXTREME) | (g > 1 - EXTREME)
    border = extreme & (_local_std(g) < 0.05)
    top, bottom = _inner_span(border.mean(axis=1))
    left, right = _inner_span(border.mean(axis=0))
    keep = np.zeros((h, w), bool)
    if bottom - top < h // 5 or right - left < w // 5:
        return ~keep  # no picture left inside: not a frame, mask nothing
    keep[top:bottom, left:right] = True
    if (top, left, bottom, right) != (0, 0, h, w):  # drop the rim where picture meets border
        keep &= ~binary_dilation(~keep, iterations=1)
    flat = extreme & (_local_std(g, 3) < FLAT_STD) & keep
    regions, n = label(flat)
    if n:
        touching = set(np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1],
                                                 regions[top], regions[bottom - 1],
                                                 regions[:, left], regions[:, right - 1]])))
        sizes = np.bincount(regions.ravel(), minlength=n + 1)
        drop = [r for r in touching if r and sizes[r] >= MIN_NODATA_SHARE * h * w]
        keep &= ~np.isin(regions, drop)
    return keep


def area_rows(area: np.ndarray, height: int, width: int, top: int, rows: int) -> np.ndarray:
    """Rows ``top .. top+rows`` of ``area`` (computed on a decimated view) at full size."""
    ah, aw = area.shape
    ys = np.minimum(((np.arange(top, top + rows) + 0.5) * ah / height).astype(int), ah - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * aw / width).astype(int), aw - 1)
    return area[ys[:, None], xs[None, :]]
