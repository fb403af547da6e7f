"""pix2pix: a conditional GAN on paired (gray, colour) images with an L1 reconstruction term."""

from __future__ import annotations

import torch

from ..color import net_input, net_target
from ..config import ModelConfig, OptimConfig
from ..losses import discriminator_loss, gan_loss, masked_l1, mean_color_l1
from ..nets import build_discriminator, build_generator
from ..nets.generators import capture_scene_features
from ..reference import simulate_references
from .base import Method, MethodOptions, adam, register, set_requires_grad, unwrap
from .scene import add_scene_head, scene_head_groups, with_scene_loss


class Pix2PixOptions(MethodOptions):
    lambda_L1: float = 100.0
    lambda_GAN: float = 1.0
    lambda_gp: float = 10.0
    # weight of an L1 term on each image's mean colour (0: off); it targets the scene-wide colour
    # cast, which dominates the colour error of aerial scenes
    lambda_mean_color: float = 0.0
    # weight of a scene-class head on the generator's scene context (0: off; needs nets.context)
    lambda_scene: float = 0.0
    scene_classes: int = 64  # outputs of that head (at least the classes in the training file names)


@register
class Pix2Pix(Method):
    name = "pix2pix"
    Options = Pix2PixOptions
    supports_reference = True

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__(cfg, training)
        self.netG = build_generator(cfg.nets, self.in_channels + self.reference_channels, self.out_channels)
        if training:  # D judges colour against the gray alone, with or without a reference
            self.netD = build_discriminator(cfg.nets, self.in_channels + self.out_channels)
            add_scene_head(self, self.opts.lambda_scene, self.opts.scene_classes)

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "G": adam(scene_head_groups(self, optim.lr_G), optim, optim.lr_G),
            "D": adam(self.netD.parameters(), optim, optim.lr_D),
        }
        return self.optimizers

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mode, gan_mode = self.mode, self.cfg.gan_mode
        real_a = net_input(batch["gray"], mode)
        real_b = net_target(batch["rgb"], mode)
        ref = None
        if self.reference_channels:
            ref = simulate_references(batch["rgb"], batch.get("mask"), self.cfg.reference, None)
        with self.amp(), capture_scene_features() as scene_features:
            fake_b = self.netG(self.with_reference(real_a, ref))

        set_requires_grad(self.netD, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            loss_d = discriminator_loss(
                self.netD, torch.cat([real_a, real_b], 1), torch.cat([real_a, fake_b], 1),
                gan_mode, self.opts.lambda_gp,
            )
        loss_d.backward()
        self.optimizers["D"].step()

        # the generator's adversarial term needs no gradient sync of D, so use the bare module
        set_requires_grad(self.netD, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.amp():
            pred_fake = unwrap(self.netD)(torch.cat([real_a, fake_b], 1))
            loss_g_gan = gan_loss(pred_fake, True, gan_mode, for_discriminator=False)
            loss_l1 = masked_l1(fake_b.float(), real_b, batch.get("mask"))
        loss_g = self.opts.lambda_GAN * loss_g_gan + self.opts.lambda_L1 * loss_l1
        losses = {"D": loss_d.detach(), "G_GAN": loss_g_gan.detach(), "G_L1": loss_l1.detach()}
        if self.opts.lambda_mean_color > 0:
            loss_mean = mean_color_l1(fake_b.float(), real_b, batch.get("mask"))
            loss_g = loss_g + self.opts.lambda_mean_color * loss_mean
            losses["G_mean_color"] = loss_mean.detach()
        loss_g = with_scene_loss(self, self.opts.lambda_scene, scene_features, batch["scene"], loss_g, losses)
        loss_g.backward()
        self.optimizers["G"].step()
        return losses
