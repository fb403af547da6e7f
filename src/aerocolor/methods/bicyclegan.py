"""BicycleGAN: multimodal colorization from paired (gray, colour) images with a latent code z.

An encoder E maps a colour image to a Gaussian over z (nz 8). Two branches train together:
cVAE-GAN colorizes the gray image with z drawn from E(colour truth) and must reconstruct the
truth (L1, weight 10) with a KL pull of E towards N(0, I) (weight 0.01); cLR-GAN colorizes with
a random z ~ N(0, I) and E must recover that z from the result (latent regression, weight 0.5).
Each branch has its own discriminator (or one shared, ``use_same_D``), judging colour images
(RGB, or L joined with ab in lab mode). z enters the U-Net at its ``input``, at ``all`` encoder
levels, or in the ``middle`` (the bottleneck).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..color import gray_from_rgb, net_input, net_target
from ..config import ModelConfig, OptimConfig
from ..errors import ConfigError
from ..losses import discriminator_loss, gan_loss, kl_to_standard_normal, masked_l1
from ..nets import build_discriminator, build_generator
from ..nets.encoders import build_latent_encoder
from .base import Method, MethodOptions, adam, parameters_of, register, set_requires_grad, unwrap
from .domains import colour_view


class BicycleGANOptions(MethodOptions):
    nz: int = 8
    where_add: Literal["input", "all", "middle"] = "all"
    nef: int = 64
    encoder_blocks: int = 5
    lambda_L1: float = 10.0
    lambda_kl: float = 0.01
    lambda_z: float = 0.5
    lambda_GAN: float = 1.0
    lambda_GAN2: float = 1.0
    use_same_D: bool = False
    lambda_gp: float = 10.0


@register
class BicycleGAN(Method):
    name = "bicyclegan"
    Options = BicycleGANOptions
    multimodal = True
    inference_nets = ("netG", "netE")
    trainable_nets = ("netG", "netE", "netD", "netD2")

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__(cfg, training)
        o = self.opts
        try:
            self.netG = build_generator(cfg.nets, self.in_channels, self.out_channels, o.nz,
                                        o.where_add)
        except ValueError as e:
            raise ConfigError(f"model.nets.netG for bicyclegan: {e}") from None
        self.netE = build_latent_encoder(3, o.nz, o.nef, o.encoder_blocks, cfg.nets.norm,
                                         cfg.nets.init_type, cfg.nets.init_gain)
        if not training:
            return
        self.netD = build_discriminator(cfg.nets, 3)
        if not o.use_same_D:
            self.netD2 = build_discriminator(cfg.nets, 3)
        self.trainable_nets = tuple(n for n in type(self).trainable_nets if hasattr(self, n))

    @property
    def discriminators(self) -> list[torch.nn.Module]:
        return [self.netD] if self.opts.use_same_D else [self.netD, self.netD2]

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "G": adam(parameters_of([self.netG, self.netE]), optim, optim.lr_G),
            "D": adam(parameters_of(self.discriminators), optim, optim.lr_D),
        }
        return self.optimizers

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        o, mode, gan_mode = self.opts, self.mode, self.cfg.gan_mode
        real_a = net_input(batch["gray"], mode)
        real_b = net_target(batch["rgb"], mode)
        real = colour_view(real_a, real_b, mode)
        n = real_a.shape[0]
        d_random = self.discriminators[-1]
        with self.amp():
            mu, logvar = self.netE(real)
            z_encoded = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            z_random = torch.randn_like(mu)
            # both branches colorize the same gray images, in one generator pass
            out = self.netG(torch.cat([real_a, real_a]), torch.cat([z_encoded, z_random]))
        fake_encoded = colour_view(real_a, out[:n], mode)
        fake_random = colour_view(real_a, out[n:], mode)

        set_requires_grad(self.discriminators, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            losses = {
                "D": discriminator_loss(self.netD, real, fake_encoded, gan_mode, o.lambda_gp),
                "D2": discriminator_loss(d_random, real, fake_random, gan_mode, o.lambda_gp),
            }
        (losses["D"] + losses["D2"]).backward()
        self.optimizers["D"].step()

        set_requires_grad(self.discriminators, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.amp():
            losses["G_GAN"] = gan_loss(unwrap(self.netD)(fake_encoded), True, gan_mode, False)
            losses["G_GAN2"] = gan_loss(unwrap(d_random)(fake_random), True, gan_mode, False)
            # the latent regression trains G alone: E is frozen for this pass
            set_requires_grad(self.netE, False)
            mu_random, _ = unwrap(self.netE)(fake_random)
            set_requires_grad(self.netE, True)
        losses["G_L1"] = masked_l1(out[:n].float(), real_b, batch.get("mask"))
        losses["kl"] = kl_to_standard_normal(mu.float(), logvar.float())
        losses["z_L1"] = F.l1_loss(mu_random.float(), z_random.float())
        (o.lambda_GAN * losses["G_GAN"] + o.lambda_GAN2 * losses["G_GAN2"]
         + o.lambda_L1 * losses["G_L1"] + o.lambda_kl * losses["kl"]
         + o.lambda_z * losses["z_L1"]).backward()
        self.optimizers["G"].step()
        return {k: v.detach() for k, v in losses.items()}

    def generate(self, x: torch.Tensor, z: torch.Tensor | None = None,
                 ref: torch.Tensor | None = None) -> torch.Tensor:
        """Colorize with code ``z`` (N or 1, nz); without one, the prior's mean z = 0 (no
        reference: this method takes none)."""
        if z is None:
            z = x.new_zeros(1, self.opts.nz)
        return unwrap(self.netG)(x, z.to(x).expand(x.shape[0], -1))

    @torch.no_grad()
    def latent_codes(self, count: int, generator: torch.Generator,
                     style: torch.Tensor | None = None) -> torch.Tensor:
        """``count`` codes (count, nz): draws from the prior N(0, I), or with a colour ``style``
        image (1,3,H,W) in [0, 1] draws from its posterior E(style); ``count`` 0 with a style
        gives its mean code alone."""
        eps = torch.randn(max(count, 1), self.opts.nz, generator=generator)
        if style is None:
            return eps
        gray = net_input(gray_from_rgb(style), self.mode)
        mu, logvar = unwrap(self.netE)(colour_view(gray, net_target(style, self.mode), self.mode))
        if count == 0:
            return mu.cpu()
        return mu.cpu() + eps * torch.exp(0.5 * logvar.cpu())
