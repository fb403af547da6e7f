"""CUT and FastCUT: one-sided unpaired translation with a patchwise contrastive (PatchNCE) loss.

The generator G maps gray old photos (A) to RGB colour (B). PatchNCE ties each patch of the
output to the same patch of the input: both pass through G's own encoder (the output as its gray
version, so they share one representation), a 2-layer MLP per layer projects sampled patches,
and each output patch must pick its input patch among the image's other patches. ``nce_idt``
adds the same term on G(gray(b)) against gray(b). FastCUT is the same method with lambda_NCE
10, no nce_idt and flip-equivariance.
"""

from __future__ import annotations

import torch

from ..color import net_input, net_target
from ..config import ModelConfig, OptimConfig
from ..errors import ConfigError
from ..losses import discriminator_loss, gan_loss, patch_nce
from ..nets import build_discriminator, build_generator, init_weights
from ..nets.encoders import (
    PatchProjector,
    encoder_layer_count,
    feature_channels,
    generator_features,
)
from .base import Method, MethodOptions, adam, register, set_requires_grad, unwrap
from .domains import gray_of_rgb_output


class CUTOptions(MethodOptions):
    lambda_GAN: float = 1.0
    lambda_NCE: float = 1.0
    nce_idt: bool = True
    nce_layers: list[int] = [0, 4, 8, 12, 16]
    num_patches: int = 256
    nce_T: float = 0.07
    netF_nc: int = 256
    flip_equivariance: bool = False
    lambda_gp: float = 10.0


class FastCUTOptions(CUTOptions):
    lambda_NCE: float = 10.0
    nce_idt: bool = False
    flip_equivariance: bool = True


@register
class CUT(Method):
    name = "cut"
    Options = CUTOptions
    data_kind = "unpaired"
    trainable_nets = ("netG", "netD", "netF")

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__(cfg, training)
        if self.mode != "rgb":
            raise ConfigError(
                f"{self.name} compares the generator's features of the input and of the output's "
                "gray version, which are the same in lab mode (L is kept): set model.color_mode=rgb"
            )
        self.netG = build_generator(cfg.nets, self.in_channels, self.out_channels)
        if not training:
            return
        layers = self.opts.nce_layers
        top = encoder_layer_count(self.netG)
        if not layers or min(layers) < 0 or max(layers) > top:
            raise ConfigError(
                f"model.options.nce_layers {layers}: {cfg.nets.netG} has encoder layers 0..{top}; "
                "choose ids in that range (U-Net: 0 is the input, k the output of level k)"
            )
        size = max(self.size_multiple, 32)
        self.netF = init_weights(
            PatchProjector(feature_channels(self.netG, self.in_channels, layers, size),
                           self.opts.netF_nc),
            cfg.nets.init_type, cfg.nets.init_gain)
        self.netD = build_discriminator(cfg.nets, self.out_channels)

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "G": adam(self.netG.parameters(), optim, optim.lr_G),
            "F": adam(self.netF.parameters(), optim, optim.lr_G),
            "D": adam(self.netD.parameters(), optim, optim.lr_D),
        }
        return self.optimizers

    def nce_loss(self, key_feats: list[torch.Tensor], out: torch.Tensor,
                 flipped: bool) -> torch.Tensor:
        """PatchNCE between the features of the sources (keys) and of the outputs ``out``
        (queries; flipped back when the sources were flipped), averaged over layers."""
        o = self.opts
        with self.amp():
            _, query_feats = generator_features(unwrap(self.netG), gray_of_rgb_output(out),
                                                o.nce_layers, encode_only=True)
        if flipped:
            query_feats = [f.flip(3) for f in query_feats]
        with torch.no_grad():  # the keys get no gradient, so their projection needs none
            keys, ids = unwrap(self.netF)(key_feats, o.num_patches)
        queries, _ = self.netF(query_feats, o.num_patches, ids)
        per_layer = [patch_nce(q, k, o.nce_T).mean() for q, k in zip(queries, keys, strict=True)]
        return torch.stack(per_layer).mean()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        o, gan_mode = self.opts, self.cfg.gan_mode
        real_a = net_input(batch["gray"], self.mode)
        real_b = net_target(batch["b_rgb"], self.mode)
        n = real_a.shape[0]
        sources = real_a
        if o.nce_idt:
            sources = torch.cat([real_a, net_input(batch["b_gray"], self.mode)])
        flipped = o.flip_equivariance and torch.rand(()).item() < 0.5
        with self.amp():
            out, key_feats = generator_features(
                unwrap(self.netG), sources.flip(3) if flipped else sources, o.nce_layers,
                runner=self.netG)
        if flipped:  # keys come from the sources as they are, and need no gradient
            with torch.no_grad(), self.amp():
                _, key_feats = generator_features(unwrap(self.netG), sources, o.nce_layers, True)
        fake_b = out[:n]

        set_requires_grad(self.netD, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            loss_d = discriminator_loss(self.netD, real_b, fake_b, gan_mode, o.lambda_gp)
        loss_d.backward()
        self.optimizers["D"].step()

        set_requires_grad(self.netD, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        self.optimizers["F"].zero_grad(set_to_none=True)
        with self.amp():
            losses = {"G_GAN": gan_loss(unwrap(self.netD)(fake_b), True, gan_mode, False)}
        # the projection head and the contrastive logits (divided by 0.07) stay in float32
        losses["NCE"] = self.nce_loss([f[:n] for f in key_feats], fake_b, flipped)
        nce = losses["NCE"]
        if o.nce_idt:
            losses["NCE_Y"] = self.nce_loss([f[n:] for f in key_feats], out[n:], flipped)
            nce = (nce + losses["NCE_Y"]) / 2
        (o.lambda_GAN * losses["G_GAN"] + o.lambda_NCE * nce).backward()
        self.optimizers["G"].step()
        self.optimizers["F"].step()
        return {"D": loss_d.detach(), **{k: v.detach() for k, v in losses.items()}}


@register
class FastCUT(CUT):
    name = "fastcut"
    Options = FastCUTOptions
