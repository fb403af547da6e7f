"""Filling the pixels of a damage mask: OpenCV's Telea fast-marching fill (the classical
baseline) and a small inpainting net, chosen per damage type as measured (see ``choose_fill``)."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy.ndimage import binary_dilation, grey_dilation

from .nets import INPAINT_BASES, SIZE_MULTIPLE, halo_tiles, in_crop, inpaint, sees_damage

TELEA_RADIUS = 3
# the smooth fill of large areas (see ``smooth_fill``), chosen on the selection half of color/val
SMOOTH_SIGMA = 32.0  # px: the scale of the surroundings averaged into a large hole
SMOOTH_REACH = 16.0  # px: how far into a hole Telea's fill still counts (its weight falls as exp(-d/reach))
SMOOTH_STEP = 8  # the averaging runs on a grid this many times coarser


def fill_region(labels: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels -> (mask codes, pixels to fill): the damage one pixel wider (its soft rim, coded
    as the damage beside it), within ``valid``."""
    fill_mask = binary_dilation(labels > 0, iterations=1)
    if valid is not None:
        fill_mask &= valid
    return np.where(fill_mask, grey_dilation(labels, size=3), 0).astype(np.uint8), fill_mask


def classical_fill(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Telea's fast-marching fill of ``mask`` (HxW bool) in a gray HxW image in [0, 1] (filled
    in 16 bits: OpenCV's float path returns noise)."""
    if not mask.any():
        return gray
    g16 = (np.clip(gray, 0, 1) * 65535 + 0.5).astype(np.uint16)
    filled = cv2.inpaint(g16, mask.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    return np.where(mask, filled.astype(np.float32) / 65535, gray).astype(np.float32)


def smooth_fill(gray: np.ndarray, mask: np.ndarray, telea: np.ndarray | None = None) -> np.ndarray:
    """Telea's fill near the edge of a masked area, turning into a Gaussian-weighted average of
    the known pixels around it (normalised convolution at ``SMOOTH_SIGMA``) deeper inside.

    Telea carries the edge's pixels inward, streaks and all; deep inside a torn corner nothing
    of the ground is left, and the local mean of the surroundings is the better guess (+0.8 dB
    over Telea inside holes on the selection half; thin damage stays Telea's, being all edge).
    Where no known pixel lies within reach, the mean of all known pixels is taken."""
    if not mask.any():
        return gray
    telea = classical_fill(gray, mask) if telea is None else telea
    known = (~mask).astype(np.float32)
    if not known.any():
        return telea
    h, w = gray.shape
    small = (max(1, w // SMOOTH_STEP), max(1, h // SMOOTH_STEP))
    sigma = SMOOTH_SIGMA / SMOOTH_STEP
    num, den = (cv2.resize(cv2.GaussianBlur(cv2.resize(a, small, interpolation=cv2.INTER_AREA), (0, 0), sigma,
                                            borderType=cv2.BORDER_REFLECT), (w, h), interpolation=cv2.INTER_LINEAR)
                for a in (np.where(mask, 0, gray).astype(np.float32), known))
    eps = 1e-3
    mean = (num + eps * float(gray[~mask].mean())) / (den + eps)
    reach = np.exp(-cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5) / SMOOTH_REACH)
    return np.where(mask, reach * telea + (1 - reach) * mean, gray).astype(np.float32)


def inpaint_base(gray: np.ndarray, mask: np.ndarray, base: str) -> np.ndarray:
    """The inpainter's input gray: masked pixels zeroed (``zeros``), filled by Telea (``telea``,
    ``telea+seen``) or by ``smooth_fill`` (``smooth+seen``)."""
    if base not in INPAINT_BASES:
        raise ValueError(f"inpainting base {base!r}: choose {', '.join(INPAINT_BASES)}")
    gray = np.clip(gray, 0, 1).astype(np.float32)
    if base == "zeros":
        return np.where(mask, 0, gray).astype(np.float32)
    return smooth_fill(gray, mask) if base.startswith("smooth") else classical_fill(gray, mask)


@torch.no_grad()
def network_fill(net: torch.nn.Module, gray: np.ndarray, mask: np.ndarray, base: str = "zeros",
                 tile: int | None = None, halo: int = 32) -> np.ndarray:
    """The inpainting net's fill of ``mask`` in a gray HxW image in [0, 1], on the ``base`` it was
    trained with (see ``inpaint_base``, computed on the whole image); unmasked pixels are
    returned unchanged. With ``tile``, the net runs on tiles of at most ``tile`` px a side, each
    with ``halo`` px of context around the core it writes, and only on tiles whose core holds
    damage: its memory then does not grow with the image, and undamaged ground costs nothing."""
    if not mask.any():
        return gray
    g = inpaint_base(gray, mask, base)
    seen = np.clip(gray, 0, 1).astype(np.float32) if sees_damage(base) else None
    h, w = gray.shape
    if tile is None or max(h, w) <= tile:
        return np.where(mask, _net_fill(net, g, mask, seen), gray).astype(np.float32)
    out = np.array(gray, np.float32)
    for core, crop in halo_tiles(h, w, tile, halo):
        if mask[core].any():
            pred = _net_fill(net, g[crop], mask[crop], None if seen is None else seen[crop])
            out[core] = np.where(mask[core], pred[in_crop(core, crop)], out[core])
    return out


def _net_fill(net: torch.nn.Module, g: np.ndarray, mask: np.ndarray, seen: np.ndarray | None) -> np.ndarray:
    """The net's prediction over a whole (crop of the) base ``g``, padded to its size multiple
    by reflection; the padding mirrors the mask too, so mirrored missing pixels are not taken
    for known ones."""
    device = next(net.parameters()).device
    h, w = g.shape
    ph, pw = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
    mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
    parts = [np.pad(a, ((0, ph), (0, pw)), mode=mode) if a is not None else None for a in (g, mask, seen)]
    g_t, m_t, s_t = (None if a is None else torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None].to(device)
                     for a in parts)
    return inpaint(net, g_t, m_t, s_t)[0, 0, :h, :w].cpu().numpy()


def choose_fill(gray: np.ndarray, mask: np.ndarray, net: torch.nn.Module | None, method: str,
                network_part: np.ndarray | None = None, base: str = "zeros", tile: int | None = None,
                halo: int = 32) -> np.ndarray:
    """Fill ``mask``: ``classical`` (Telea), ``network``, or ``auto``: the net for the pixels of
    ``network_part`` (the damage types where it measured better), Telea for the rest, first, so
    the net sees them filled."""
    if method == "classical" or net is None or (method == "auto" and (network_part is None or not network_part.any())):
        return classical_fill(gray, mask)
    if method == "network":
        return network_fill(net, gray, mask, base, tile, halo)
    by_net = mask & network_part
    out = classical_fill(gray, mask & ~by_net)
    return network_fill(net, out, by_net, base, tile, halo) if by_net.any() else out
