"""Colour-difference metrics shared by validation and evaluation."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import deltaE_ciede2000

from .color import rgb_to_lab, to_tensor


def lab_of(img: np.ndarray) -> np.ndarray:
    """HxWx3 sRGB in [0, 1] -> HxWx3 CIE L*a*b*."""
    return rgb_to_lab(to_tensor(img))[0].permute(1, 2, 0).numpy()


def mean_ciede2000(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean CIEDE2000 colour difference between two HxWx3 sRGB images, over ``mask`` pixels."""
    de = deltaE_ciede2000(lab_of(truth), lab_of(pred))
    if mask is not None:
        m = mask.astype(bool)
        return float(de[m].mean()) if m.any() else float("nan")
    return float(de.mean())


def as_float(x: torch.Tensor | float) -> float:
    return float(x.item()) if isinstance(x, torch.Tensor) else float(x)
