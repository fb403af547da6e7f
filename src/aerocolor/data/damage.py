"""Synthetic damage of scanned film: dust, hairs, scratches along the film, emulsion blotches, and
torn corners or missing strips, each drawn with a label so a detector can learn to find them.

Every mark replaces pixels (hard edges, no anti-aliasing), so the label mask says exactly which
pixels were drawn. A given (image, seed, strengths) always draws the same damage.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

DAMAGE_TYPES = ("dust", "hairs", "scratches", "blotches", "holes")
LABEL = {name: i + 1 for i, name in enumerate(DAMAGE_TYPES)}  # 0: clean
REFERENCE_AREA = 256 * 256  # counts below are per this many pixels


@dataclass(frozen=True)
class Damage:
    """Strength per damage type (0 turns it off, 1 a typical badly kept negative)."""

    dust: float = 1.0
    hairs: float = 1.0
    scratches: float = 1.0
    blotches: float = 1.0
    holes: float = 1.0


def _tone(rng: np.random.Generator, bright_share: float) -> float:
    """A bright (light through the negative) or dark (opaque dirt) value."""
    return float(rng.uniform(0.85, 1.0) if rng.random() < bright_share else rng.uniform(0.0, 0.15))


def draw_dust(h: int, w: int, strength: float, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Specks of 1-5 pixels, mostly white, some elongated."""
    mask = np.zeros((h, w), bool)
    for _ in range(rng.poisson(strength * 14 * h * w / REFERENCE_AREA)):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.6, 2.5, 2)
        y0, y1 = max(0, int(y - ry - 1)), min(h, int(y + ry + 2))
        x0, x1 = max(0, int(x - rx - 1)), min(w, int(x + rx + 2))
        yy, xx = np.ogrid[y0:y1, x0:x1]
        spot = ((yy + 0.5 - y) / ry) ** 2 + ((xx + 0.5 - x) / rx) ** 2 <= 1
        spot |= (yy == int(y)) & (xx == int(x))  # at least the centre pixel
        out[y0:y1, x0:x1][spot] = _tone(rng, 0.75)
        mask[y0:y1, x0:x1] |= spot
    return mask


def _polyline(mask: np.ndarray, points: np.ndarray, width: int) -> None:
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1, thickness=width,
                  lineType=cv2.LINE_8)


def draw_hairs(h: int, w: int, strength: float, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Curly fibres 20-120 pixels long, 1-2 wide, white or black."""
    mask = np.zeros((h, w), bool)
    for _ in range(rng.poisson(strength * 1.2 * h * w / REFERENCE_AREA)):
        steps = int(rng.integers(8, 40))
        heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.35, steps))
        step = rng.uniform(2.5, 3.5)
        start = rng.uniform(0, (h, w))
        points = start + np.cumsum(step * np.stack([np.sin(heading), np.cos(heading)], 1), 0)
        one = np.zeros((h, w), np.uint8)
        _polyline(one, points[:, ::-1], 1 if rng.random() < 0.7 else 2)
        drawn = one > 0
        out[drawn] = _tone(rng, 0.6)
        mask |= drawn
    return mask


def draw_scratches(h: int, w: int, strength: float, rng: np.random.Generator,
                   out: np.ndarray) -> np.ndarray:
    """Long straight lines along the film transport (mostly vertical on the scan), 1-3 pixels
    wide, lighter or darker than the ground by a fixed amount."""
    mask = np.zeros((h, w), bool)
    for _ in range(rng.poisson(strength * 2.0 * np.sqrt(h * w / REFERENCE_AREA))):
        vertical = rng.random() < 0.75
        length, across = (h, w) if vertical else (w, h)
        a0 = rng.uniform(0, across)
        slope = rng.uniform(-0.03, 0.03)
        t0 = rng.uniform(0, 0.6) * length
        t1 = min(length, t0 + rng.uniform(0.4, 1.0) * length)
        ends = np.array([[t0, a0], [t1, a0 + slope * (t1 - t0)]])
        one = np.zeros((h, w), np.uint8)
        _polyline(one, ends[:, ::-1] if vertical else ends, int(rng.choice([1, 1, 2, 3])))
        drawn = one > 0
        sign = 1.0 if rng.random() < 0.6 else -1.0
        shifted = out[drawn] + sign * rng.uniform(0.3, 0.55)
        out[drawn] = np.clip(shifted, 0, 1) if shifted.size else shifted
        mask |= drawn
    return mask


def draw_blotches(h: int, w: int, strength: float, rng: np.random.Generator,
                  out: np.ndarray) -> np.ndarray:
    """Irregular emulsion stains 8-40 pixels across that cover the ground with a flat tone."""
    mask = np.zeros((h, w), bool)
    for _ in range(rng.poisson(strength * 0.7 * h * w / REFERENCE_AREA)):
        r = rng.uniform(4, 20)
        size = int(2 * r + 8)
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        noise = gaussian_filter(rng.standard_normal((size, size)), r / 4)
        noise /= noise.std() + 1e-6
        yy, xx = np.mgrid[:size, :size] - size / 2
        field = 1 - np.sqrt(yy**2 + (xx * rng.uniform(0.6, 1.4)) ** 2) / r + 0.3 * noise
        blob = field > 0
        y0, x0 = y - size // 2, x - size // 2
        sy = slice(max(0, y0), min(h, y0 + size))
        sx = slice(max(0, x0), min(w, x0 + size))
        blob = blob[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0]
        a = rng.uniform(0.6, 0.95)
        region = out[sy, sx]
        region[blob] = (1 - a) * region[blob] + a * _tone(rng, 0.5)
        mask[sy, sx] |= blob
    return mask


def draw_holes(h: int, w: int, strength: float, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """A torn corner (a jagged triangle) or a missing strip along an edge, pure white or black."""
    mask = np.zeros((h, w), np.uint8)
    if rng.random() >= min(1.0, 0.5 * strength):
        return mask > 0
    side = min(h, w)
    if rng.random() < 0.6:
        a, b = rng.uniform(0.12, 0.4, 2) * side
        inner = np.linspace([a, 0], [0, b], 8) + rng.normal(0, 0.03 * side, (8, 2))
        poly = np.concatenate([[[0, 0]], inner])  # (x, y) at the top-left corner
        flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
        poly[:, 0] = w - 1 - poly[:, 0] if flip_x else poly[:, 0]
        poly[:, 1] = h - 1 - poly[:, 1] if flip_y else poly[:, 1]
    else:
        depth = rng.uniform(0.04, 0.12) * side
        n = 10
        along = np.linspace(0, 1, n)
        jag = depth + rng.normal(0, 0.25 * depth, n)
        edge = int(rng.integers(4))
        length = w if edge < 2 else h
        inner = np.stack([along * (length - 1), np.clip(jag, 1, None)], 1)
        poly = np.concatenate([[[0, 0]], inner, [[length - 1, 0]]])
        if edge == 1:
            poly[:, 1] = h - 1 - poly[:, 1]
        elif edge >= 2:
            poly = poly[:, ::-1].copy()
            if edge == 3:
                poly[:, 0] = w - 1 - poly[:, 0]
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1, lineType=cv2.LINE_8)
    drawn = mask > 0
    out[drawn] = 1.0 if rng.random() < 0.5 else 0.0
    return drawn


DRAW = {"blotches": draw_blotches, "scratches": draw_scratches, "hairs": draw_hairs,
        "dust": draw_dust, "holes": draw_holes}  # drawing order: later marks lie on top


def draw_damage(gray: np.ndarray, seed: int | list[int], params: Damage = Damage()
                ) -> tuple[np.ndarray, np.ndarray]:
    """Gray HxW in [0, 1] -> (damaged copy as float32, labels HxW uint8: 0 clean, else
    ``LABEL[type]`` of the mark drawn last on that pixel)."""
    rng = np.random.default_rng(seed)
    out = np.array(gray, dtype=np.float32, copy=True)
    labels = np.zeros(out.shape, np.uint8)
    h, w = out.shape
    for name, draw in DRAW.items():
        strength = getattr(params, name)
        if strength > 0:
            labels[draw(h, w, strength, rng, out)] = LABEL[name]
    return out, labels


def type_masks(labels: np.ndarray) -> np.ndarray:
    """Labels HxW -> (len(DAMAGE_TYPES), H, W) booleans, one plane per type."""
    return labels[None] == np.arange(1, len(DAMAGE_TYPES) + 1, dtype=labels.dtype)[:, None, None]
