"""Finding the frame of a scanned aerial photo: the unexposed film border around the picture,
with its fiducial marks and the data strip (clock, altimeter, frame number) printed in it, and
flat no-data areas (pure black or white) reaching in from the edge."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_opening, label, uniform_filter

EXTREME = 0.08  # darker than this or brighter than 1 - this: film border or no-data
MIN_PICTURE_SHARE = 0.2  # a picture smaller than this share of the scan is not looked for
RIM = 2  # pixels of the border's edge that the local-std window counts as content
FLAT_STD = 0.01  # no-data areas inside the picture are flat to this
MIN_NODATA_SHARE = 0.002  # flat edge areas smaller than this share of the image are left alone


def _local_std(g: np.ndarray, size: int = 5) -> np.ndarray:
    mean = uniform_filter(g, size)
    return np.sqrt(np.maximum(uniform_filter(g * g, size) - mean * mean, 0))


def picture_area(gray: np.ndarray) -> np.ndarray:
    """Gray HxW in [0, 1] (a decimated view of the scan) -> True on the picture itself, False on
    the frame border, its marks and data strip, and flat no-data areas touching the edge.

    The picture is the bounding box of the largest area that is not flat black or white (the
    film border is; marks and data strips are separate islands in it), less flat extreme areas
    reaching in from its edge (torn corners, no-data)."""
    g = np.asarray(gray, np.float32)
    h, w = g.shape
    extreme = (g < EXTREME) | (g > 1 - EXTREME)
    content = binary_opening(~(extreme & (_local_std(g) < 0.05)), iterations=2)
    regions, n = label(content)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)
    sizes[0] = 0
    keep = np.ones((h, w), bool)
    if n == 0 or sizes.max() < MIN_PICTURE_SHARE * h * w:
        return keep  # no picture large enough: not a frame, mask nothing
    ys, xs = np.nonzero(regions == sizes.argmax())
    top, left = (v + RIM if v > 0 else 0 for v in (ys.min(), xs.min()))
    bottom = ys.max() + 1 - RIM if ys.max() + 1 < h else h
    right = xs.max() + 1 - RIM if xs.max() + 1 < w else w
    keep[:] = False
    keep[top:bottom, left:right] = True
    flat = extreme & (_local_std(g, 3) < FLAT_STD) & keep
    regions, n = label(flat)
    if n:
        touching = np.unique(np.concatenate([regions[top], regions[bottom - 1],
                                             regions[:, left], regions[:, right - 1]]))
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
