"""Colour spaces and the tensors the networks see.

Conventions (one place, used by training, inference, evaluation and export):
- images are float tensors in [0, 1], shape (N, C, H, W), sRGB, D65 white;
- ``rgb`` mode: the network maps gray in [-1, 1] (1 channel) to RGB in [-1, 1] (3 channels);
- ``lab`` mode: the network maps L*/50 - 1 (1 channel) to a*/110, b*/110 (2 channels).
"""

from __future__ import annotations

import numpy as np
import torch

COLOR_MODES = ("rgb", "lab")
AB_SCALE = 110.0
L_SCALE = 50.0

_XYZ_FROM_RGB = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = torch.tensor([0.950456, 1.0, 1.088754])
_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _mix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", m.to(x), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] (N,3,H,W) -> CIE L*a*b* (L in [0, 100])."""
    xyz = _mix(_XYZ_FROM_RGB, srgb_to_linear(rgb)) / _WHITE_D65.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > _EPS, xyz.clamp(min=_EPS) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    return torch.cat([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIE L*a*b* (N,3,H,W) -> sRGB in [0, 1] (clipped unless ``clip`` is False)."""
    L, a, b = lab[:, 0:1], lab[:, 1:2], lab[:, 2:3]
    fy = (L + 16) / 116
    f = torch.cat([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = torch.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA)
    xyz = xyz * _WHITE_D65.to(lab).view(1, 3, 1, 1)
    rgb = linear_to_srgb(_mix(torch.linalg.inv(_XYZ_FROM_RGB).to(lab), xyz))
    return rgb.clamp(0, 1) if clip else rgb


def lightness_from_gray(gray: torch.Tensor) -> torch.Tensor:
    """L* of a neutral sRGB gray value in [0, 1] (N,1,H,W)."""
    y = srgb_to_linear(gray)
    return torch.where(y > _EPS, 116 * y.clamp(min=_EPS) ** (1 / 3) - 16, _KAPPA * y)


def gray_from_lightness(L: torch.Tensor) -> torch.Tensor:
    """The neutral sRGB gray in [0, 1] whose L* is ``L``."""
    fy = (L + 16) / 116
    y = torch.where(fy**3 > _EPS, fy**3, L / _KAPPA)
    return linear_to_srgb(y).clamp(0, 1)


def gray_from_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Perceptual gray version of a colour image: the neutral gray with the same L*."""
    return gray_from_lightness(rgb_to_lab(rgb)[:, 0:1])


def net_input(gray: torch.Tensor, mode: str) -> torch.Tensor:
    """Gray image in [0, 1] -> the generator's input tensor for ``mode``."""
    if mode == "lab":
        return lightness_from_gray(gray) / L_SCALE - 1
    return gray * 2 - 1


def net_target(rgb: torch.Tensor, mode: str) -> torch.Tensor:
    """Colour image in [0, 1] -> the generator's target tensor for ``mode``."""
    if mode == "lab":
        return rgb_to_lab(rgb)[:, 1:3] / AB_SCALE
    return rgb * 2 - 1


def rgb_from_output(out: torch.Tensor, gray: torch.Tensor, mode: str, chroma: float = 1.0) -> torch.Tensor:
    """Generator output -> sRGB in [0, 1].

    In ``lab`` mode the ab prediction is upsampled (bilinear) to the size of ``gray`` and joined
    with its full-resolution L*, so no detail of the input is lost. ``chroma`` multiplies the
    colour's a*, b* (its saturation; 1: as predicted), in either mode.
    """
    if mode == "lab":
        ab = out * (AB_SCALE * chroma)
        if ab.shape[-2:] != gray.shape[-2:]:
            ab = torch.nn.functional.interpolate(
                ab, size=gray.shape[-2:], mode="bilinear", align_corners=False
            )
        return lab_to_rgb(torch.cat([lightness_from_gray(gray), ab], dim=1))
    rgb = (out + 1) / 2
    if rgb.shape[-2:] != gray.shape[-2:]:
        rgb = torch.nn.functional.interpolate(
            rgb, size=gray.shape[-2:], mode="bilinear", align_corners=False
        )
    rgb = rgb.clamp(0, 1)
    if chroma == 1.0:
        return rgb
    lab = rgb_to_lab(rgb)
    return lab_to_rgb(torch.cat([lab[:, :1], lab[:, 1:] * chroma], dim=1))


def out_channels(mode: str) -> int:
    return 2 if mode == "lab" else 3


def check_mode(mode: str) -> str:
    if mode not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {mode!r}: choose one of {', '.join(COLOR_MODES)}")
    return mode


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC float array in [0, 1] -> (1, C, H, W) tensor."""
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().unsqueeze(0)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> HxWxC (or HxW for C=1) float32 array."""
    arr = t.detach().float().cpu().numpy()[0].transpose(1, 2, 0)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr
