"""PatchGAN discriminators."""

from __future__ import annotations

import torch.nn as nn

from ..config import NetworkConfig
from .layers import conv_bias, init_weights, norm_layer


def patchgan(in_ch: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Sequential:
    """PatchGAN: ``n_layers`` stride-2 4x4 convolutions then two stride-1 ones; each output
    pixel judges one overlapping patch (70x70 for n_layers=3)."""
    bias = conv_bias(norm)
    layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2**n, 8)
        stride = 2 if n < n_layers else 1
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias),
                   norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def pixel_discriminator(in_ch: int, ndf: int = 64, norm: str = "batch") -> nn.Sequential:
    """1x1 PatchGAN: judges each pixel's colour on its own."""
    return nn.Sequential(
        nn.Conv2d(in_ch, ndf, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, 2 * ndf, 1, bias=conv_bias(norm)), norm_layer(norm, 2 * ndf),
        nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(2 * ndf, 1, 1, bias=False),
    )


def build_discriminator(cfg: NetworkConfig, in_ch: int) -> nn.Module:
    if cfg.netD == "basic":
        net = patchgan(in_ch, cfg.ndf, 3, cfg.norm)
    elif cfg.netD == "n_layers":
        net = patchgan(in_ch, cfg.ndf, cfg.n_layers_D, cfg.norm)
    else:
        net = pixel_discriminator(in_ch, cfg.ndf, cfg.norm)
    return init_weights(net, cfg.init_type, cfg.init_gain)
