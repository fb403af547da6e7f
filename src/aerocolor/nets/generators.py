"""Generators: U-Net (any depth, optional latent code) and ResNet (any number of blocks, optional
scene context)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn as nn

from ..config import NetworkConfig
from ..errors import ConfigError
from .layers import ConvTranspose2d, conv_bias, init_weights, norm_layer, scope_stats

UNET_DEPTHS = {"unet_32": 5, "unet_64": 6, "unet_128": 7, "unet_256": 8}
Z_INJECTIONS = ("input", "all", "middle")
GENERATOR_CHOICES = ("unet_32, unet_64, unet_128, unet_256, unet (with model.nets.unet_depth), "
                     "resnet_6blocks, resnet_9blocks (any resnet_<n>blocks)")


def _level_channels(ngf: int, depth: int) -> list[int]:
    return [ngf * min(2**i, 8) for i in range(depth)]


class UNetGenerator(nn.Module):
    """U-Net with ``depth`` stride-2 levels; skip connections join each level's encoder output.

    Level 0 is the outermost; the innermost level has no normalisation; levels 4 .. depth-2 use
    dropout (the reference's ngf*8 blocks), so ``depth`` 8 reproduces the reference unet_256.

    With ``nz`` > 0 a latent code z (N, nz), tiled over the image plane, is concatenated to the
    input of the first level (``input``), of every encoder level (``all``), or only to the
    bottleneck, the innermost level's output (``middle``).
    """

    def __init__(self, in_ch: int, out_ch: int, depth: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = True, nz: int = 0, inject: str = "input"):
        super().__init__()
        if depth < 2:
            raise ConfigError(f"model.nets.unet_depth: must be at least 2, got {depth}")
        if inject not in Z_INJECTIONS:
            raise ConfigError(f"model.options.where_add: unknown z injection {inject!r}: "
                              f"choose {', '.join(Z_INJECTIONS)}")
        self.depth, self.nz, self.inject = depth, nz, inject
        ch = _level_channels(ngf, depth)
        bias = conv_bias(norm)
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in range(depth):
            c_in = (in_ch if i == 0 else ch[i - 1]) + (nz if self._z_at_level(i) else 0)
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, inplace=True)]
            layers.append(nn.Conv2d(c_in, ch[i], 4, 2, 1, bias=bias or i == depth - 1))
            if 0 < i < depth - 1:
                layers.append(norm_layer(norm, ch[i]))
            self.down.append(nn.Sequential(*layers))
        for i in range(depth):
            c_in = ch[i] + (nz if inject == "middle" else 0) if i == depth - 1 else 2 * ch[i]
            if i == 0:
                layers = [nn.ReLU(inplace=True), ConvTranspose2d(c_in, out_ch, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(inplace=True),
                          ConvTranspose2d(c_in, ch[i - 1], 4, 2, 1, bias=bias),
                          norm_layer(norm, ch[i - 1])]
                if dropout and 4 <= i <= depth - 2:
                    layers.append(nn.Dropout(0.5))
            self.up.append(nn.Sequential(*layers))

    def _z_at_level(self, i: int) -> bool:
        return self.nz > 0 and (self.inject == "all" or (self.inject == "input" and i == 0))

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if self.nz and z is None:
            raise ValueError("this U-Net takes a latent code z")
        skips = []
        for i, block in enumerate(self.down):
            x = block(with_code(x, z) if self._z_at_level(i) else x)
            skips.append(x)
        bottleneck = skips[-1]
        x = self.up[-1](with_code(bottleneck, z) if self.nz and self.inject == "middle" else bottleneck)
        for i in range(self.depth - 2, -1, -1):
            x = self.up[i](torch.cat([skips[i], x], dim=1))
        return x


def with_code(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``x`` with the code ``z`` (N, nz) appended as nz constant planes."""
    planes = z.to(x.dtype).view(*z.shape, 1, 1).expand(-1, -1, *x.shape[-2:])
    return torch.cat([x, planes], dim=1)


class ContextPool(nn.Module):
    """Per-channel mean of a feature map over the whole image (N,C,H,W) -> (N,C).

    Like an instance norm it depends on the whole input, so it takes its statistics from the
    current :class:`~aerocolor.nets.layers.StatsScope` where one is set: inference pools them
    over many tiles of a large input and shares them, so every tile sees the context of the
    whole input.
    """

    track_running_stats = False  # the instance-norm interface: statistics are never kept here

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        given = scope_stats(self, x)
        if given is not None:
            return given[0].to(x.dtype).view(1, -1).expand(x.shape[0], -1)
        return x.mean(dim=(2, 3))


_SCENE_FEATURES: ContextVar[list[torch.Tensor] | None] = ContextVar("scene_features", default=None)


@contextmanager
def capture_scene_features() -> Iterator[list[torch.Tensor]]:
    """Collects the pooled scene-context features (N, C) of each :class:`SceneContext` that runs
    inside the block, in order, e.g. for a training-only scene-class head. Kept per thread and
    never on the modules, so concurrent calls do not see each other's features."""
    box: list[torch.Tensor] = []
    token = _SCENE_FEATURES.set(box)
    try:
        yield box
    finally:
        _SCENE_FEATURES.reset(token)


class SceneContext(nn.Module):
    """Global scene context: the features, downsampled 4x more and averaged over the image,
    become a per-channel scale and shift of the features. Which colour a field or a roof has
    depends on the whole scene (farmland, desert, forest) more than on a local patch. The last
    layer starts at zero, so the block starts as the identity (a trained generator can take it
    on and keep its outputs)."""

    def __init__(self, ch: int, norm: str):
        super().__init__()
        bias = conv_bias(norm)
        self.encode = nn.Sequential(
            nn.Conv2d(ch, 2 * ch, 3, 2, 1, bias=bias), norm_layer(norm, 2 * ch), nn.ReLU(inplace=True),
            nn.Conv2d(2 * ch, 2 * ch, 3, 2, 1, bias=bias), norm_layer(norm, 2 * ch), nn.ReLU(inplace=True))
        self.pool = ContextPool(2 * ch)
        self.film = nn.Sequential(nn.Linear(2 * ch, 2 * ch), nn.ReLU(inplace=True), nn.Linear(2 * ch, 2 * ch))

    def start_as_identity(self) -> None:
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.encode(x))
        if (box := _SCENE_FEATURES.get()) is not None:
            box.append(pooled)
        scale, shift = self.film(pooled).to(x.dtype).chunk(2, dim=1)
        return x * (1 + scale[..., None, None]) + shift[..., None, None]


class ResnetBlock(nn.Module):
    def __init__(self, ch: int, norm: str, dropout: bool, context: bool = False):
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias),
                                   norm_layer(norm, ch), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=bias), norm_layer(norm, ch)]
        self.body = nn.Sequential(*layers)
        self.context = SceneContext(ch, norm) if context else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.body(x)
        return x if self.context is None else self.context(x)


class ResnetGenerator(nn.Sequential):
    """Johnson-style ResNet generator: 7x7 stem, two stride-2 downsamplings, ``n_blocks``
    residual blocks at 1/4 resolution, two transposed-conv upsamplings, 7x7 head with tanh.
    With ``context`` the middle block's output is modulated by the scene context
    (:class:`SceneContext`)."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int = 9, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False, context: bool = False):
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(inplace=True)]
        for k in range(2):
            c = ngf * 2**k
            layers += [nn.Conv2d(c, 2 * c, 3, 2, 1, bias=bias), norm_layer(norm, 2 * c),
                       nn.ReLU(inplace=True)]
        middle = max(0, n_blocks // 2 - 1)
        layers += [ResnetBlock(4 * ngf, norm, dropout, context and i == middle) for i in range(n_blocks)]
        for k in (2, 1):
            c = ngf * 2**k
            layers += [nn.ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU(inplace=True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7), nn.Tanh()]
        super().__init__(*layers)


def unet_depth(cfg: NetworkConfig) -> int:
    if cfg.unet_depth is not None:
        return cfg.unet_depth
    if cfg.netG in UNET_DEPTHS:
        return UNET_DEPTHS[cfg.netG]
    if cfg.netG != "unet":
        raise ConfigError(f"model.nets.netG: unknown generator {cfg.netG!r}: choose {GENERATOR_CHOICES}")
    raise ConfigError(f"model.nets.netG {cfg.netG!r} needs model.nets.unet_depth (number of downsamplings)")


def _resnet_blocks(name: str) -> int | None:
    m = re.fullmatch(r"resnet_(\d+)blocks", name)
    return int(m.group(1)) if m else None


def size_multiple(cfg: NetworkConfig) -> int:
    """Input height and width must be multiples of this for the generator."""
    if cfg.netG.startswith("unet"):
        return 2 ** unet_depth(cfg)
    return 4


def build_generator(cfg: NetworkConfig, in_ch: int, out_ch: int, nz: int = 0,
                    inject: str = "input") -> nn.Module:
    """Build and initialise a generator by name: unet_128, unet_256, unet (with unet_depth),
    resnet_6blocks, resnet_9blocks (any resnet_<n>blocks). A latent code (``nz`` > 0, injected
    at ``inject``) needs a U-Net."""
    if cfg.context and not cfg.netG.startswith("resnet"):
        raise ConfigError(f"model.nets.context needs a ResNet generator (resnet_6blocks, resnet_9blocks), "
                          f"not {cfg.netG!r}")
    if cfg.netG.startswith("unet"):
        net: nn.Module = UNetGenerator(in_ch, out_ch, unet_depth(cfg), cfg.ngf, cfg.norm,
                                       cfg.dropout, nz, inject)
    elif nz:
        raise ConfigError(f"model.nets.netG {cfg.netG!r} takes no latent code: choose a U-Net (unet_256, unet)")
    elif (n := _resnet_blocks(cfg.netG)) is not None:
        net = ResnetGenerator(in_ch, out_ch, n, cfg.ngf, cfg.norm, cfg.dropout, cfg.context)
    else:
        raise ConfigError(f"model.nets.netG: unknown generator {cfg.netG!r}: choose {GENERATOR_CHOICES}")
    init_weights(net, cfg.init_type, cfg.init_gain)
    for m in net.modules():
        if isinstance(m, SceneContext):
            m.start_as_identity()
    return net
