"""What the colorizer needs of a generator, whichever runtime (torch, onnxruntime) runs it.

Layers that see the whole input (instance norms, scene-context pools) make a generator's output
depend on the statistics it normalises with. A large input is colorized tile by tile with the
same statistics in every tile: the colorizer first asks for them (``pooled_norm_stats`` on
blocks spread across the input), then passes them, as a plain value, to every call. Nothing is
left on the model between calls, so one generator serves many threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch

from ..errors import CheckpointError

DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 64
DEFAULT_BATCH = 1

# Whole-input statistics as a backend keeps them (opaque to the colorizer); None: each input's own
NormStats = Any
# () -> the batches (gray, z, ref) of a statistics sample, a few blocks each, read afresh per call
StatsBatches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]]


class Generator(Protocol):
    """gray (N,1,H,W) in [0, 1] -> raw output (RGB, or ab in ``lab`` mode)."""

    mode: str  # "rgb" or "lab"
    size_multiple: int  # input sides must be multiples of this
    out_channels: int
    multimodal: bool
    z_dim: int  # latent code length (0 unless multimodal)
    instance_norm: bool  # has layers that depend on whole-input statistics
    reference_channels: int  # planes of a colour reference it takes (0: none; see aerocolor.reference)

    def __call__(self, gray: torch.Tensor, z: torch.Tensor | None,
                 stats: NormStats = None, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Raw output; every whole-input layer uses ``stats`` (from :meth:`pooled_norm_stats`)
        where given, else each input's own statistics; ``ref`` the reference planes (None: none)."""

    def pooled_norm_stats(self, gray: torch.Tensor, z: torch.Tensor | None,
                          ref: torch.Tensor | None = None) -> NormStats:
        """Statistics of every whole-input layer pooled over the whole batch (its tiles taken as
        one image)."""

    def stats_waves(self, z: torch.Tensor | None) -> int:
        """Passes over the batches that :meth:`accumulated_norm_stats` makes: one per whole-input
        layer (each layer's statistics depend on those before it); 0 when it cannot."""

    def accumulated_norm_stats(self, batches: StatsBatches) -> NormStats:
        """What :meth:`pooled_norm_stats` gives for all the batches taken as one, accumulated
        batch by batch, so memory is that of one batch."""


def merge_moments(parts: list[tuple[float, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, variance) of a union from its parts' (weight, mean, variance), the
    weight being a part's element count (or anything proportional to it); summed in float64 so
    the result equals a one-pass reduction to float32 rounding."""
    total = sum(w for w, _, _ in parts)
    mean = sum(w * m.double() for w, m, _ in parts) / total
    square = sum(w * (v.double() + m.double() ** 2) for w, m, v in parts) / total
    dtype = parts[0][1].dtype
    return mean.to(dtype), (square - mean**2).clamp(min=0).to(dtype)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(
            f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return torch.device(name)
