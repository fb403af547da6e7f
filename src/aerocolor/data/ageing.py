"""Synthetic ageing: gray inputs that look like scans of 1930s-1980s aerial film.

Each effect has a strength (0 turns it off, 1 is a typical old photo) and is drawn at random per
image within that strength, from a generator seeded by the caller and the ``seed`` parameter, so
a given (image, generator) always ages the same way.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, fields
from functools import partial

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..color import linear_to_srgb, srgb_to_linear
from ..errors import ConfigError
from .damage import draw_dust, draw_scratches

LUMINANCE = np.array([0.212671, 0.715160, 0.072169], dtype=np.float32)
# panchromatic aerial film behind a minus-blue haze filter: more red, less green than the eye
PANCHROMATIC = np.array([0.40, 0.46, 0.14], dtype=np.float32)
# ageing's dust and scratch strengths in the units of aerocolor.data.damage
DUST_PER_DAMAGE, SCRATCHES_PER_DAMAGE = 0.78, 0.75


@dataclass(frozen=True)
class Ageing:
    film: float = 1.0
    contrast: float = 0.5
    gamma: float = 0.5
    fade: float = 0.5
    grain: float = 0.5
    blur: float = 0.3
    vignette: float = 0.4
    dust: float = 0.3
    scratches: float = 0.3
    jpeg: float = 0.4
    seed: int = 0


def ageing_params(cfg: dict | None) -> Ageing:
    """Validated ageing parameters; keys left out keep their defaults."""
    cfg = dict(cfg or {})
    names = {f.name for f in fields(Ageing)}
    unknown = sorted(set(cfg) - names)
    if unknown:
        raise ConfigError(f"unknown ageing effect(s) {', '.join(unknown)}: choose from "
                          f"{', '.join(sorted(names))}")
    try:
        values = {k: (int(v) if k == "seed" else float(v)) for k, v in cfg.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"ageing strengths must be numbers, got {cfg}") from None
    bad = [k for k, v in values.items() if k != "seed" and v < 0]
    if bad:
        raise ConfigError(f"ageing strength(s) {', '.join(bad)} must be >= 0 (0 turns one off)")
    return Ageing(**values)


def parse_ageing(spec: str) -> Ageing:
    """'default' or 'grain=0.8,blur=0.2,seed=3' (the rest keep their defaults)."""
    if spec.strip().lower() in ("", "default", "on", "yes", "true"):
        return Ageing()
    pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ConfigError(f"--age {spec!r}: write effect=strength pairs, e.g. grain=0.8,blur=0.2")
    return ageing_params({k.strip(): v.strip() for k, v in pairs})


def film_gray(rgb: np.ndarray, film: float) -> np.ndarray:
    """Gray as the film saw it: linear-light weights blended from the eye's luminance
    (film=0, the neutral gray of equal L*) to a panchromatic film response (film=1)."""
    weights = (1 - min(film, 1.0)) * LUMINANCE + min(film, 1.0) * PANCHROMATIC
    linear = srgb_to_linear(torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)))
    return linear_to_srgb(linear @ torch.from_numpy(weights)).clamp(0, 1).numpy()


def tone_curve(g: np.ndarray, params: Ageing, rng: np.random.Generator) -> np.ndarray:
    """Exposure and print: a random gamma (brightening more often, as overexposed film does),
    contrast mostly flattened, and blacks lifted by haze, film fog and fading."""
    g = g ** float(np.exp(rng.uniform(-1, 0.4) * 0.8 * params.gamma))
    mean = float(g.mean())
    g = mean + (g - mean) * (1 + params.contrast * rng.uniform(-0.6, 0.2))
    fog = params.fade * rng.uniform(0.1, 0.35)
    return fog + (1 - fog) * np.clip(g, 0, 1)


def vignetting(g: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Light fall-off towards the corners (cos^4 of wide-angle survey lenses), off-centre."""
    h, w = g.shape
    cy, cx = (0.5 + rng.uniform(-0.15, 0.15, 2)) * (h, w)
    yy, xx = np.ogrid[:h, :w]
    r2 = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2
    return g * (1 - 0.35 * strength * rng.uniform(0.5, 1.5) * np.clip(r2 / 2, 0, 1.5))


def film_grain(g: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Silver-grain noise, strongest in the mid-tones, slightly clumped."""
    noise = gaussian_filter(rng.standard_normal(g.shape).astype(np.float32), 0.7)
    noise /= noise.std() + 1e-6
    amplitude = 0.07 * strength * rng.uniform(0.5, 1.5) * np.sqrt(4 * g * (1 - g) + 0.05)
    return g + amplitude * noise


def dust_and_scratches(g: np.ndarray, dust: float, scratches: float,
                       rng: np.random.Generator) -> np.ndarray:
    """Specks of dust on the negative and thin scratches along the film transport, drawn as the
    restoration's synthetic damage draws them (about 11 specks per 256 x 256 pixels and 1.5
    scratches per image at strength 1)."""
    h, w = g.shape
    out = g.copy()
    if dust:
        draw_dust(h, w, DUST_PER_DAMAGE * dust, rng, out)
    if scratches:
        draw_scratches(h, w, SCRATCHES_PER_DAMAGE * scratches, rng, out)
    return out


def jpeg_roundtrip(g: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The compression of archive scans and web-map tiles."""
    quality = int(round(95 - 70 * strength * rng.uniform(0.5, 1.0)))
    buf = io.BytesIO()
    Image.fromarray((np.clip(g, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "JPEG",
                                                                        quality=max(quality, 5))
    return np.asarray(Image.open(buf), dtype=np.float32) / 255.0


def age_image(img: np.ndarray, rng: np.random.Generator, params: Ageing) -> np.ndarray:
    """Age a colour (HxWx3) or gray (HxW) image in [0, 1] -> gray HxW float32 in [0, 1]."""
    rng = np.random.default_rng([params.seed, int(rng.integers(2**63))])
    g = film_gray(img, params.film) if img.ndim == 3 else np.asarray(img, dtype=np.float32)
    g = tone_curve(np.clip(g, 0, 1), params, rng)
    if params.blur > 0:
        g = gaussian_filter(g, params.blur * rng.uniform(0.5, 1.5) * 1.2)
    if params.vignette > 0:
        g = vignetting(g, params.vignette, rng)
    if params.grain > 0:
        g = film_grain(np.clip(g, 0, 1), params.grain, rng)
    g = dust_and_scratches(np.clip(g, 0, 1), params.dust, params.scratches, rng)
    if params.jpeg > 0:
        g = jpeg_roundtrip(g, params.jpeg, rng)
    return np.clip(g, 0, 1).astype(np.float32)


def build_ager(cfg: dict | Ageing | None):
    """``ager(image, rng) -> gray`` for a dict of effect strengths (and ``seed``)."""
    params = cfg if isinstance(cfg, Ageing) else ageing_params(cfg)
    return partial(age_image, params=params)


def preview_grid(images: list[np.ndarray], params: Ageing, variants: int = 4) -> np.ndarray:
    """Rows of: the image, its plain luminance gray, then ``variants`` aged versions."""
    from ..color import gray_from_rgb, to_numpy, to_tensor
    from ..imageio import as_rgb

    size = min(min(i.shape[:2]) for i in images)
    rows = []
    for index, img in enumerate(images):
        rgb = as_rgb(img)[:size, :size]
        plain = to_numpy(gray_from_rgb(to_tensor(rgb)))
        aged = [age_image(rgb, np.random.default_rng([index, v]), params) for v in range(variants)]
        rows.append(np.concatenate([rgb] + [as_rgb(g) for g in [plain, *aged]], axis=1))
    return np.concatenate(rows, axis=0)


def describe(params: Ageing) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(params).items())
