"""The restoration networks: a damage segmenter and an inpainting generator, one small
encoder-decoder each (full-resolution stem, three stride-2 levels, dilated context, skips)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.damage import DAMAGE_TYPES
from ..nets.layers import fold_batch_norms, init_weights, norm_layer

SIZE_MULTIPLE = 8  # three stride-2 levels


def conv_block(c_in: int, c_out: int, stride: int = 1, dilation: int = 1, norm: str = "batch") -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation=dilation, bias=False),
                         norm_layer(norm, c_out), nn.ReLU(inplace=True))


class RestoreNet(nn.Module):
    """(N, in_ch, H, W) -> (N, out_ch, H, W); H and W multiples of ``SIZE_MULTIPLE``."""

    def __init__(self, in_ch: int, out_ch: int, width: int = 16, norm: str = "batch"):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.stem = nn.Sequential(conv_block(in_ch, c1, norm=norm), conv_block(c1, c1, norm=norm))
        self.down1 = nn.Sequential(conv_block(c1, c2, 2, norm=norm), conv_block(c2, c2, norm=norm))
        self.down2 = nn.Sequential(conv_block(c2, c3, 2, norm=norm), conv_block(c3, c3, norm=norm))
        self.down3 = nn.Sequential(conv_block(c3, c3, 2, norm=norm), conv_block(c3, c3, 1, 2, norm),
                                   conv_block(c3, c3, 1, 4, norm))
        self.up2 = conv_block(2 * c3, c3, norm=norm)
        self.up1 = conv_block(c3 + c2, c2, norm=norm)
        self.up0 = conv_block(c2 + c1, c1, norm=norm)
        self.head = nn.Conv2d(c1, out_ch, 1)
        init_weights(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.down1(s0)
        s2 = self.down2(s1)
        y = self.down3(s2)
        for skip, block in ((s2, self.up2), (s1, self.up1), (s0, self.up0)):
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.head(y)


def halo_tiles(h: int, w: int, tile: int, halo: int):
    """Windows covering an HxW image, as ((rows, cols) of the core, (rows, cols) of the crop):
    cores of ``tile - 2 * halo`` px, each crop its core with ``halo`` px of context around it, cut
    at the image's edges; a net run on the crop writes only the core."""
    core = tile - 2 * halo
    for top in range(0, h, core):
        for left in range(0, w, core):
            yield ((slice(top, min(h, top + core)), slice(left, min(w, left + core))),
                   (slice(max(0, top - halo), min(h, top + core + halo)),
                    slice(max(0, left - halo), min(w, left + core + halo))))


def in_crop(core: tuple[slice, slice], crop: tuple[slice, slice]) -> tuple[slice, slice]:
    """Where a ``halo_tiles`` core lies inside its crop."""
    return tuple(slice(c.start - o.start, c.stop - o.start) for c, o in zip(core, crop, strict=True))


def inference_copy(net: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of a restoration net for inference: eval mode, batch norms folded into the
    convolutions before them, weights in channels_last order (oneDNN's and cuDNN's faster layout
    for these 3x3 convolutions). The same outputs to float rounding; the net itself is untouched."""
    net = copy.deepcopy(net).to(device).eval()
    fold_batch_norms(net)
    return net.to(memory_format=torch.channels_last)


def damage_detector(width: int = 16) -> RestoreNet:
    """Gray (N,1,H,W) in [0, 1] -> logits (N, 1 + len(DAMAGE_TYPES), H, W): clean, then each type."""
    return RestoreNet(1, 1 + len(DAMAGE_TYPES), width)


# what the inpainter's input holds in the masked pixels: zeros, Telea's fill, or Telea's fill
# plus a channel with the damaged pixels as scanned (a blotch or scratch still shows the ground),
# or the same with Telea's fill turning into the mean of the surroundings deep inside large areas
INPAINT_BASES = ("zeros", "telea", "telea+seen", "smooth+seen")


def sees_damage(base: str) -> bool:
    return base.endswith("+seen")


def inpainter(width: int = 16, zero_head: bool = False, base: str = "zeros") -> RestoreNet:
    """(base gray, mask[, damaged pixels]) (N,2 or 3,H,W) -> gray residual (N,1,H,W), see
    :func:`inpaint`. With ``zero_head`` the residual starts at exactly zero, so a net on a Telea
    base starts as Telea."""
    net = RestoreNet(3 if sees_damage(base) else 2, 1, width)
    if zero_head:
        nn.init.zeros_(net.head.weight)
        nn.init.zeros_(net.head.bias)
    return net


def inpaint(net: nn.Module, base: torch.Tensor, mask: torch.Tensor, seen: torch.Tensor | None = None
            ) -> torch.Tensor:
    """The masked pixels (``mask`` (N,1,H,W), 1 = missing) predicted as ``base`` plus the net's
    residual, the others kept exactly. ``base`` is the gray (N,1,H,W) with the masked pixels
    zeroed (base ``zeros``) or already filled by Telea (``telea``: the net corrects it); ``seen``,
    for a net that takes it, the damaged gray as scanned (only its masked pixels are shown)."""
    known = base * (1 - mask)
    parts = [base * 2 - 1, mask] + ([(seen * 2 - 1) * mask] if seen is not None else [])
    pred = (base + net(torch.cat(parts, 1))).clamp(0, 1)
    return known + pred * mask


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
