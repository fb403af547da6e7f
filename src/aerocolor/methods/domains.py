"""How the unpaired and multimodal methods see the two domains in each colour mode.

Domain A (gray) is always the generator input of :func:`aerocolor.color.net_input`. Domain B
(colour) is the generator output: RGB in ``rgb`` mode, ab in ``lab`` mode. Discriminators and
encoders judge a whole colour image, which in ``lab`` mode is L joined with ab.
"""

from __future__ import annotations

import torch

from ..color import gray_from_rgb, net_input


def colour_view(x: torch.Tensor, out: torch.Tensor, mode: str) -> torch.Tensor:
    """The whole colour image of generator input ``x`` and output ``out``: RGB, or L+ab."""
    return torch.cat([x.to(out.dtype), out], dim=1) if mode == "lab" else out


def gray_of_rgb_output(out: torch.Tensor) -> torch.Tensor:
    """The gray input representation of an RGB generator output (differentiable)."""
    return net_input(gray_from_rgb((out.float() + 1) / 2), "rgb")


def rgb_of_gray(x: torch.Tensor) -> torch.Tensor:
    """A gray image in the RGB representation: the gray channel repeated."""
    return x.expand(-1, 3, -1, -1)
