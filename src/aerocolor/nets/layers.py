"""Normalisation layers and weight initialisation shared by all networks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import ConfigError

# (mean, var) per layer that depends on the whole input, keyed by the layer
WholeInputStats = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]


class StatsComplete(Exception):
    """Raised once the last expected layer of a pooling pass has recorded its statistics: the rest
    of the pass cannot change them."""


@dataclass
class StatsScope:
    """How whole-input layers (instance norms, scene-context pools) get their statistics during
    one forward pass: ``given`` ones, or (``pool``) pooled over the whole batch as if its tiles
    were one image, recorded in ``pooled``. Kept per thread (a context variable), never on the
    modules, so one model can serve many threads at once."""

    given: WholeInputStats | None = None
    pool: bool = False
    stop_after: int | None = None
    pooled: WholeInputStats = field(default_factory=dict)
    calls: int = 0

    def stats(self, layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(mean, var) per channel for ``layer`` on ``x``, or None: the input's own."""
        if self.given and layer in self.given:
            return self.given[layer]
        if not self.pool:
            return None
        xf = x.float()
        mean, var = xf.mean(dim=(0, 2, 3)), xf.var(dim=(0, 2, 3), unbiased=False)
        self.pooled[layer] = (mean, var)
        self.calls += 1
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise StatsComplete
        return mean, var


_SCOPE: ContextVar[StatsScope | None] = ContextVar("aerocolor_stats_scope", default=None)


@contextmanager
def stats_scope(scope: StatsScope) -> Iterator[StatsScope]:
    """Run the forward passes inside with ``scope`` deciding the whole-input statistics."""
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def scope_stats(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    scope = _SCOPE.get()
    return None if scope is None else scope.stats(layer, x)


class InstanceNorm(nn.InstanceNorm2d):
    """An instance norm whose statistics can come from the current :class:`StatsScope` (shared
    across the tiles of a large input) instead of each input's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        given = scope_stats(self, x)
        if given is None:
            return super().forward(x)
        mean, var = (s.to(x.dtype).view(1, -1, 1, 1) for s in given)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return InstanceNorm(channels, affine=False, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"model.nets.norm: unknown norm {kind!r}: choose batch, instance or none")


# Transposed convolutions whose input has at most this many positions (batch x height x width) run
# as one matrix product and a col2im fold on the CPU (:class:`ConvTranspose2d`).
SMALL_PLANE_POSITIONS = 64


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that, on the CPU, runs small planes (the inner levels of a U-Net:
    1x1 to 8x8 at batch 1) as one matrix product (input channels x output channels x kernel)
    and a col2im fold. There oneDNN's kernel spends far longer than the weight's size needs:
    forward and backward of a 1024 -> 512 layer on a 4x4 plane took 71 ms against 26 ms this way
    (2 threads). Same parameters and state dict, same result to float rounding; larger planes,
    other devices, tracing and ONNX export use the standard operator."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not self._small_plane(x):
            return super().forward(x, output_size)
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        out_h = (h - 1) * self.stride[0] - 2 * self.padding[0] + kh + self.output_padding[0]
        out_w = (w - 1) * self.stride[1] - 2 * self.padding[1] + kw + self.output_padding[1]
        # (N, HW, Cin) @ (Cin, Cout*kh*kw): the weight's gradient comes out in its own layout
        cols = x.reshape(n, c, h * w).transpose(1, 2) @ self.weight.reshape(c, -1)
        y = F.fold(cols.transpose(1, 2), (out_h, out_w), self.kernel_size, stride=self.stride,
                   padding=self.padding)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def _small_plane(self, x: torch.Tensor) -> bool:
        if (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_compiling()):
            return False
        return (x.device.type == "cpu" and x.dim() == 4
                and x.shape[0] * x.shape[2] * x.shape[3] <= SMALL_PLANE_POSITIONS
                and self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros")


def conv_bias(kind: str) -> bool:
    """A convolution followed by batch or instance norm needs no bias: the norm subtracts the
    mean, so the bias's gradient is pure rounding noise, which Adam would turn into full steps."""
    return kind == "none"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights as the reference GAN codes do (normal(0, 0.02) by default)."""

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ConfigError(f"model.nets.init_type: unknown {init_type!r}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def fold_batch_norms(net: nn.Module) -> int:
    """Fold every eval-mode batch norm that directly follows a convolution (plain or transposed)
    in a Sequential into that convolution's weights and bias, in place; returns how many. Each
    norm is then an identity: one pass over the activations less per layer."""
    folded = 0
    for parent in net.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for conv_name, norm_name in zip(names, names[1:], strict=False):
            conv, norm = parent._modules[conv_name], parent._modules[norm_name]
            if (isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) and isinstance(norm, nn.BatchNorm2d)
                    and norm.track_running_stats and not norm.training):
                parent._modules[conv_name] = fuse_conv_bn_eval(
                    conv, norm, transpose=isinstance(conv, nn.ConvTranspose2d))
                parent._modules[norm_name] = nn.Identity()
                folded += 1
    return folded
