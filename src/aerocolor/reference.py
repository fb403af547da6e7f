"""Colour references: the extra planes a reference-conditioned generator sees beside the gray.

A reference is another colour image of the same place (a modern orthophoto) or, without
georeference, of a similar scene. The generator sees it as ``REFERENCE_CHANNELS`` planes at the
input's size, in the same units as its ``lab`` output:

- ``a``, ``b``: the reference's a*/110, b*/110 at a coarse scale (averaged over blocks of
  ``scale`` pixels, then bilinearly upsampled), zero where it has no data;
- ``valid``: 1 where the reference has data (upsampled the same way, so soft at its edges);
- ``palette``: 1 in palette mode, where ``a``, ``b`` hold the reference's mean colour everywhere
  (its colour statistics, not its layout) and ``valid`` is 0.

All planes zero means no reference. Training makes references from the truth (see
:func:`simulate_references`) so the model learns to follow a reference where the gray agrees
with it and to fall back on the gray where the ground changed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .color import AB_SCALE, rgb_to_lab

REFERENCE_CHANNELS = 4
MIN_VALID_FRACTION = 0.5  # a coarse cell needs this share of valid pixels to count as data


def coarse_planes(rgb: torch.Tensor, valid: torch.Tensor | None, scale: int) -> torch.Tensor:
    """Colour (N,3,H,W) in [0, 1] and its data mask (N,1,H,W) -> coarse (N,3,ceil(H/s),ceil(W/s))
    planes ``a``, ``b``, ``valid``: the valid pixels of each ``scale`` block averaged in RGB,
    then converted to a*b*."""
    if valid is None:
        valid = rgb.new_ones(rgb.shape[0], 1, *rgb.shape[-2:])
    h, w = rgb.shape[-2:]
    ph, pw = -h % scale, -w % scale
    rgb, valid = F.pad(rgb, (0, pw, 0, ph)), F.pad(valid.to(rgb.dtype), (0, pw, 0, ph))
    weight = F.avg_pool2d(valid, scale)
    mean = F.avg_pool2d(rgb * valid, scale) / weight.clamp(min=1e-6)
    return planes_from_coarse_rgb(mean, weight >= MIN_VALID_FRACTION)


def planes_from_coarse_rgb(rgb: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Coarse colour (N,3,h,w) in [0, 1] and validity (N,1,h,w) -> planes ``a``, ``b``, ``valid``."""
    v = valid.to(rgb.dtype)
    ab = rgb_to_lab(rgb.clamp(0, 1))[:, 1:3] / AB_SCALE
    return torch.cat([ab * v, v], dim=1)


def upsample_planes(coarse: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    """Coarse planes (N,3,h,w) -> full planes (N,4,H,W) (``palette`` 0), bilinear by ``scale``
    then cropped to ``size``."""
    up = F.interpolate(coarse, scale_factor=scale, mode="bilinear", align_corners=False)
    up = up[..., :size[0], :size[1]]
    return torch.cat([up, up.new_zeros(up.shape[0], 1, *up.shape[-2:])], dim=1)


def palette_planes(mean_ab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A palette reference: mean a*/110, b*/110 (N,2) -> planes (N,4,H,W)."""
    n = mean_ab.shape[0]
    ab = mean_ab.view(n, 2, 1, 1).expand(-1, -1, *size)
    return torch.cat([ab, mean_ab.new_zeros(n, 1, *size), mean_ab.new_ones(n, 1, *size)], dim=1)


def mean_ab(rgb: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean a*/110, b*/110 (N,2) of colour images (N,3,H,W), over their valid pixels."""
    ab = rgb_to_lab(rgb.clamp(0, 1))[:, 1:3] / AB_SCALE
    if valid is None:
        return ab.mean(dim=(2, 3))
    v = valid.to(ab.dtype)
    return (ab * v).sum(dim=(2, 3)) / v.sum(dim=(2, 3)).clamp(min=1)


def no_reference(n: int, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(n, REFERENCE_CHANNELS, *size)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def jitter_colour(rgb: torch.Tensor, gen: torch.Generator, saturation: float, shift: float) -> torch.Tensor:
    """Another season or sensor: per image, a random colour gain per channel and a shift towards
    a random hue (in RGB, so the result stays a plausible photo)."""
    n = rgb.shape[0]
    gain = 1 + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1).to(rgb) * saturation
    offset = (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1).to(rgb) * shift
    gray = rgb.mean(dim=1, keepdim=True)
    sat = _uniform(n, 1 - saturation, 1 + saturation, gen, rgb.device).view(n, 1, 1, 1)
    return ((gray + (rgb - gray) * sat) * gain + offset).clamp(0, 1)


def replace_parts(rgb: torch.Tensor, gen: torch.Generator, parts: int, max_side: float) -> torch.Tensor:
    """Simulated land-cover change: up to ``parts`` random rectangles (sides up to ``max_side`` of
    the image) take the content of another image of the batch."""
    n, _, h, w = rgb.shape
    if n < 2 or parts == 0:
        return rgb
    out = rgb.clone()
    other = rgb.roll(1, dims=0)
    for i in range(n):
        for _ in range(int(torch.randint(0, parts + 1, (1,), generator=gen))):
            rh = max(1, int(h * max_side * float(torch.rand(1, generator=gen))))
            rw = max(1, int(w * max_side * float(torch.rand(1, generator=gen))))
            top = int(torch.randint(0, h - rh + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - rw + 1, (1,), generator=gen))
            out[i, :, top:top + rh, left:left + rw] = other[i, :, top:top + rh, left:left + rw]
    return out


def misregister(rgb: torch.Tensor, valid: torch.Tensor, gen: torch.Generator, max_shift: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each reference by up to ``max_shift`` pixels each way; what moves in from outside
    has no data."""
    if max_shift == 0:
        return rgb, valid
    out, ok = torch.empty_like(rgb), torch.zeros_like(valid)
    h, w = rgb.shape[-2:]
    for i in range(rgb.shape[0]):
        dy, dx = (int(torch.randint(-max_shift, max_shift + 1, (1,), generator=gen)) for _ in range(2))
        src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        out[i] = 0
        out[i, :, dst_y, dst_x] = rgb[i, :, src_y, src_x]
        ok[i, :, dst_y, dst_x] = valid[i, :, src_y, src_x]
    return out, ok


def partial_cover(valid: torch.Tensor, gen: torch.Generator, probability: float) -> torch.Tensor:
    """Partial overlap: with ``probability``, the part of each image beyond a random vertical or
    horizontal line has no reference."""
    out = valid.clone()
    h, w = valid.shape[-2:]
    for i in range(valid.shape[0]):
        if float(torch.rand(1, generator=gen)) >= probability:
            continue
        side = int(torch.randint(0, 4, (1,), generator=gen))
        frac = 0.2 + 0.6 * float(torch.rand(1, generator=gen))
        if side == 0:
            out[i, :, :int(h * frac)] = 0
        elif side == 1:
            out[i, :, int(h * frac):] = 0
        elif side == 2:
            out[i, :, :, :int(w * frac)] = 0
        else:
            out[i, :, :, int(w * frac):] = 0
    return out


def simulate_references(rgb: torch.Tensor, mask: torch.Tensor | None, cfg, gen: torch.Generator
                        ) -> torch.Tensor:
    """Realistic training references (N,4,H,W) made from the truth ``rgb`` (N,3,H,W): land-cover
    change, another season, misregistration, partial cover, then the coarse scale; each image's
    reference is kept local, turned into a palette, or dropped with the probabilities of ``cfg``
    (a :class:`~aerocolor.config.ReferenceConfig`)."""
    n, _, h, w = rgb.shape
    valid = torch.ones(n, 1, h, w, device=rgb.device) if mask is None else mask.to(rgb.dtype)
    ref = replace_parts(rgb.float(), gen, cfg.change_parts, cfg.change_max_side)
    ref = jitter_colour(ref, gen, cfg.jitter_saturation, cfg.jitter_shift)
    ref, valid = misregister(ref, valid, gen, cfg.max_shift)
    valid = partial_cover(valid, gen, cfg.partial_probability)
    local = upsample_planes(coarse_planes(ref, valid, cfg.scale), cfg.scale, (h, w))
    palette = palette_planes(mean_ab(ref, valid), (h, w))
    draw = torch.rand(n, generator=gen).to(rgb.device).view(n, 1, 1, 1)
    use_palette = draw < cfg.palette_probability
    dropped = (draw >= cfg.palette_probability) & (draw < cfg.palette_probability + cfg.drop_probability)
    planes = torch.where(use_palette, palette, local)
    return torch.where(dropped, torch.zeros_like(planes), planes)
