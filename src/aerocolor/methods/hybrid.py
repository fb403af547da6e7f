"""Hybrid: pix2pix's paired objective on gray versions of colour photos, adapted to real old film.

Paired part (as pix2pix): on a colour photo ``b`` and its gray version, the generator's output is
pulled to the truth by L1 (``lambda_L1``) and a conditional PatchGAN ``netD`` (``lambda_GAN``).

Adaptation part, on real old photos ``a`` (no colour truth), run through the same generator:
- a second PatchGAN ``netD_old`` sees only the colour channels (ab in ``lab`` mode, RGB in ``rgb``)
  and tells colorized old photos from real colour photos (``lambda_adapt``); seeing no gray
  input, it cannot tell the domains apart by film grain or tone, only by colour;
- the batch's per-channel colour mean and spread on old photos are matched to those of the real
  colour photos (``lambda_stats``), so the colours the model gives real film are as strong and
  varied as those it gives gray versions of modern photos.

The research found pix2pix best on gray versions of colour photos and CycleGAN/CUT better on real
old photos; this method trains one generator for both. Data: ``data.train`` colour photos and
``data.train_a`` old photos, as for the unpaired methods.
"""

from __future__ import annotations

import torch

from ..color import net_input, net_target
from ..config import ModelConfig, OptimConfig
from ..losses import discriminator_loss, gan_loss, masked_l1, moment_match_l1
from ..nets import build_discriminator, build_generator
from ..nets.generators import capture_scene_features
from .base import Method, MethodOptions, adam, parameters_of, register, set_requires_grad, unwrap
from .scene import add_scene_head, scene_head_groups, with_scene_loss


class HybridOptions(MethodOptions):
    lambda_L1: float = 100.0  # pix2pix's weight
    lambda_GAN: float = 1.0
    lambda_gp: float = 10.0
    lambda_adapt: float = 1.0  # adversarial term on colorized old photos (0: off)
    lambda_stats: float = 10.0  # colour mean/spread matching on old photos (0: off)
    adapt_batch: int = 0  # old photos of each batch that the adaptation terms use (0: all)
    lambda_scene: float = 0.0  # scene-class head on the scene context (pix2pix's option)
    scene_classes: int = 64


@register
class Hybrid(Method):
    name = "hybrid"
    Options = HybridOptions
    data_kind = "unpaired"  # batches hold old photos (gray, mask) and colour photos (b_*)
    trainable_nets = ("netG", "netD", "netD_old")
    calibration_keys = ("gray", "b_gray")  # old photos and gray versions of colour photos alike

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__(cfg, training)
        self.netG = build_generator(cfg.nets, self.in_channels, self.out_channels)
        if training:
            self.netD = build_discriminator(cfg.nets, self.in_channels + self.out_channels)
            self.netD_old = build_discriminator(cfg.nets, self.out_channels)
            add_scene_head(self, self.opts.lambda_scene, self.opts.scene_classes)

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "G": adam(scene_head_groups(self, optim.lr_G), optim, optim.lr_G),
            "D": adam(parameters_of([self.netD, self.netD_old]), optim, optim.lr_D),
        }
        return self.optimizers

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mode, gan_mode, o = self.mode, self.cfg.gan_mode, self.opts
        gray_b, real_b = net_input(batch["b_gray"], mode), net_target(batch["b_rgb"], mode)
        old, old_mask, b_mask = net_input(batch["gray"], mode), batch.get("mask"), batch.get("b_mask")
        if o.adapt_batch > 0:  # fewer old photos: the adaptation terms cost a generator pass each
            old = old[: o.adapt_batch]
            old_mask = None if old_mask is None else old_mask[: o.adapt_batch]
        adapt = o.lambda_adapt > 0 or o.lambda_stats > 0
        with self.amp():
            with capture_scene_features() as scene_features:
                fake_b = self.netG(gray_b)
            fake_old = self.netG(old) if adapt else None

        nets_d = [self.netD, self.netD_old]
        set_requires_grad(nets_d, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            loss_d = discriminator_loss(self.netD, torch.cat([gray_b, real_b], 1),
                                        torch.cat([gray_b, fake_b], 1), gan_mode, o.lambda_gp)
            loss_d_old = (discriminator_loss(self.netD_old, real_b, fake_old, gan_mode, o.lambda_gp)
                          if o.lambda_adapt > 0 else torch.zeros((), device=real_b.device))
        (loss_d + loss_d_old).backward()
        self.optimizers["D"].step()

        set_requires_grad(nets_d, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.amp():
            loss_g_gan = gan_loss(unwrap(self.netD)(torch.cat([gray_b, fake_b], 1)), True, gan_mode,
                                  for_discriminator=False)
            loss_l1 = masked_l1(fake_b.float(), real_b, b_mask)
            loss_g = o.lambda_GAN * loss_g_gan + o.lambda_L1 * loss_l1
            losses = {"D": loss_d.detach(), "G_GAN": loss_g_gan.detach(), "G_L1": loss_l1.detach()}
            if o.lambda_adapt > 0:
                loss_adapt = gan_loss(unwrap(self.netD_old)(fake_old), True, gan_mode, for_discriminator=False)
                loss_g = loss_g + o.lambda_adapt * loss_adapt
                losses |= {"D_old": loss_d_old.detach(), "G_adapt": loss_adapt.detach()}
            if o.lambda_stats > 0:
                loss_stats = moment_match_l1(fake_old.float(), real_b, old_mask, b_mask)
                loss_g = loss_g + o.lambda_stats * loss_stats
                losses["G_stats"] = loss_stats.detach()
        loss_g = with_scene_loss(self, o.lambda_scene, scene_features, batch["b_scene"], loss_g, losses)
        loss_g.backward()
        self.optimizers["G"].step()
        return losses
