"""Encoders: the generator's own encoder features (for PatchNCE), the PatchNCE projection head,
and the latent encoder of BicycleGAN."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generators import ResnetGenerator, UNetGenerator
from .layers import init_weights, norm_layer


class _EncoderDone(Exception):
    """Stops a generator pass once the last wanted encoder feature is taken."""


def _layer_hooks(net: nn.Module) -> list[tuple[nn.Module, bool]]:
    """(module, whether the layer is that module's input) for each encoder layer id of a
    generator. ResNet: layer i is the output of the i-th module of the sequence (0 is the padded
    input, as in the reference CUT). U-Net: layer 0 is the input, layer k the output of level k."""
    if isinstance(net, UNetGenerator):
        return [(net.down[0], True)] + [(block, False) for block in net.down]
    if isinstance(net, ResnetGenerator):
        return [(module, False) for module in net]
    raise TypeError(f"{type(net).__name__} exposes no encoder layers")


def encoder_layer_count(net: nn.Module) -> int:
    """The highest valid encoder layer id of a generator."""
    return len(_layer_hooks(net)) - 1


def generator_features(net: nn.Module, x: torch.Tensor, layers: list[int],
                       encode_only: bool = False, runner: nn.Module | None = None
                       ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """(output, features at ``layers``) of one pass of generator ``net`` (called through
    ``runner``, e.g. its DistributedDataParallel wrapper, when given); ``encode_only`` stops
    after the last wanted layer and returns no output."""
    taken: dict[int, torch.Tensor] = {}
    hooks = _layer_hooks(net)
    last = max(layers)

    def keeper(k: int):
        def keep(module, args, output=None):
            taken[k] = args[0] if output is None else output
            if encode_only and k == last:
                raise _EncoderDone
        return keep

    handles = [hooks[k][0].register_forward_pre_hook(keeper(k)) if hooks[k][1]
               else hooks[k][0].register_forward_hook(keeper(k)) for k in sorted(set(layers))]
    out = None
    try:
        out = (runner or net)(x)
    except _EncoderDone:
        pass
    finally:
        for h in handles:
            h.remove()
    return out, [taken[k] for k in layers]


@torch.no_grad()
def feature_channels(net: nn.Module, in_ch: int, layers: list[int], size: int) -> list[int]:
    """Channel counts of the generator's features at ``layers`` (one dry run in eval mode)."""
    was = net.training
    net.eval()
    _, feats = generator_features(net, torch.zeros(1, in_ch, size, size), layers, encode_only=True)
    net.train(was)
    return [f.shape[1] for f in feats]


class PatchProjector(nn.Module):
    """The PatchNCE head: samples the same patch positions from query and key features and maps
    each patch's feature vector through a 2-layer MLP (one per layer) onto the unit sphere."""

    def __init__(self, channels: list[int], nc: int = 256):
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, nc), nn.ReLU(inplace=True), nn.Linear(nc, nc))
            for c in channels
        )

    def forward(self, feats: list[torch.Tensor], num_patches: int,
                patch_ids: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Features (N,C,H,W) per layer -> (projected patches (N,P,nc) per layer, patch ids)."""
        out, ids = [], []
        for k, (feat, mlp) in enumerate(zip(feats, self.mlps, strict=True)):
            flat = feat.flatten(2).transpose(1, 2)  # N, H*W, C
            pid = patch_ids[k] if patch_ids is not None else torch.randperm(
                flat.shape[1], device=feat.device)[:num_patches]
            out.append(F.normalize(mlp(flat[:, pid].float()), dim=-1))
            ids.append(pid)
        return out, ids


class ResidualDown(nn.Module):
    """norm-act-conv-norm-act-conv then 2x average pooling, plus a pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(norm, c_in), nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_in, 3, 1, 1),
            norm_layer(norm, c_in), nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 3, 1, 1),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class LatentEncoder(nn.Module):
    """BicycleGAN's encoder E: a colour image -> (mu, logvar) of a Gaussian over the latent code.

    A stride-2 stem, ``n_blocks - 1`` residual downsampling blocks (width nef * min(k, 4)),
    global average pooling (so any image size works), and two linear heads.
    """

    def __init__(self, in_ch: int, nz: int = 8, nef: int = 64, n_blocks: int = 5,
                 norm: str = "instance"):
        super().__init__()
        widths = [nef * min(k, 4) for k in range(1, n_blocks + 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_ch, nef, 4, 2, 1)]
        layers += [ResidualDown(widths[k], widths[k + 1], norm) for k in range(n_blocks - 1)]
        layers += [nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.mu = nn.Linear(widths[-1], nz)
        self.logvar = nn.Linear(widths[-1], nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), self.logvar(h)


def build_latent_encoder(in_ch: int, nz: int, nef: int, n_blocks: int, norm: str,
                         init_type: str = "normal", init_gain: float = 0.02) -> LatentEncoder:
    return init_weights(LatentEncoder(in_ch, nz, nef, n_blocks, norm), init_type, init_gain)
