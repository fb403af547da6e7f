"""CycleGAN: unpaired gray old photos (A) and colour photos (B), two generators tied by cycles.

``rgb`` mode: G maps gray to RGB, F maps RGB to gray; D_B judges colour, D_A judges gray; the
cycles F(G(a)) ~ a and G(F(b)) ~ b (weights lambda_A, lambda_B) and the identity terms
G(gray(b)) ~ b and F(rgb(a)) ~ a (weight lambda_identity; 0 turns them off).

``lab`` mode: the colour-to-gray direction is exactly the L* channel, so there is one generator
G (L -> ab); the B -> A -> B cycle is G(L(b)) ~ ab(b), the A -> B -> A cycle holds by
construction, the identity term coincides with the B cycle, and D_B judges L joined with ab.
"""

from __future__ import annotations

import torch

from ..color import net_input, net_target
from ..config import ModelConfig, OptimConfig
from ..losses import discriminator_loss, gan_loss, masked_l1
from ..nets import build_discriminator, build_generator
from .base import Method, MethodOptions, adam, parameters_of, register, set_requires_grad, unwrap
from .domains import colour_view, rgb_of_gray


class ImagePool:
    """A history of generated images: the discriminator sees, with probability 1/2, an older
    fake instead of the newest one (the reference's pool of 50)."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            img = img[None]
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif torch.rand(()).item() < 0.5:
                k = int(torch.randint(0, self.size, ()).item())
                out.append(self.images[k])
                self.images[k] = img
            else:
                out.append(img)
        return torch.cat(out)

    def state(self) -> list[torch.Tensor]:
        return [img.cpu() for img in self.images]

    def load(self, images: list[torch.Tensor], device: torch.device) -> None:
        self.images = [img.to(device) for img in images]


class CycleGANOptions(MethodOptions):
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    lambda_gp: float = 10.0


@register
class CycleGAN(Method):
    name = "cyclegan"
    Options = CycleGANOptions
    data_kind = "unpaired"
    trainable_nets = ("netG", "netF", "netD_A", "netD_B")

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__(cfg, training)
        self.two_sided = self.mode == "rgb"
        self.netG = build_generator(cfg.nets, self.in_channels, self.out_channels)
        if not training:
            return
        self.netD_B = build_discriminator(cfg.nets, 3)
        self.pool_B = ImagePool(self.opts.pool_size)
        if self.two_sided:
            self.netF = build_generator(cfg.nets, 3, self.in_channels)
            self.netD_A = build_discriminator(cfg.nets, self.in_channels)
            self.pool_A = ImagePool(self.opts.pool_size)
        self.trainable_nets = tuple(n for n in type(self).trainable_nets if hasattr(self, n))

    @property
    def generators(self) -> list[torch.nn.Module]:
        return [self.netG, self.netF] if self.two_sided else [self.netG]

    @property
    def discriminators(self) -> list[torch.nn.Module]:
        return [self.netD_A, self.netD_B] if self.two_sided else [self.netD_B]

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        self.optimizers = {
            "G": adam(parameters_of(self.generators), optim, optim.lr_G),
            "D": adam(parameters_of(self.discriminators), optim, optim.lr_D),
        }
        return self.optimizers

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mode, gan_mode, o = self.mode, self.cfg.gan_mode, self.opts
        real_a = net_input(batch["gray"], mode)
        b_in = net_input(batch["b_gray"], mode)
        real_b = net_target(batch["b_rgb"], mode)
        mask_a, mask_b = batch.get("mask"), batch.get("b_mask")
        identity = self.two_sided and o.lambda_identity > 0
        with self.amp():
            fake_b = self.netG(real_a)
            if self.two_sided:
                rec_a = self.netF(fake_b)
                fake_a = self.netF(real_b)
                rec_b = self.netG(fake_a)
            else:  # F(b) is L(b) itself
                rec_b = self.netG(b_in)
            if identity:
                idt_g = self.netG(b_in)
                idt_f = self.netF(rgb_of_gray(real_a))

        # generators first, against the current discriminators (bare modules: no gradient sync)
        set_requires_grad(self.discriminators, False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        view_fake_b = colour_view(real_a, fake_b, mode)
        with self.amp():
            losses = {"G_GAN": gan_loss(unwrap(self.netD_B)(view_fake_b), True, gan_mode, False)}
            if self.two_sided:
                losses["F_GAN"] = gan_loss(unwrap(self.netD_A)(fake_a), True, gan_mode, False)
        losses["cycle_B"] = masked_l1(rec_b.float(), real_b, mask_b)
        total = losses["G_GAN"] + o.lambda_B * losses["cycle_B"]
        if self.two_sided:
            losses["cycle_A"] = masked_l1(rec_a.float(), real_a, mask_a)
            total = total + losses["F_GAN"] + o.lambda_A * losses["cycle_A"]
        if identity:
            losses["idt_G"] = masked_l1(idt_g.float(), real_b, mask_b)
            losses["idt_F"] = masked_l1(idt_f.float(), real_a, mask_a)
            total = total + o.lambda_identity * (o.lambda_B * losses["idt_G"]
                                                 + o.lambda_A * losses["idt_F"])
        total.backward()
        self.optimizers["G"].step()

        set_requires_grad(self.discriminators, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.amp():
            losses["D_B"] = discriminator_loss(
                self.netD_B, colour_view(b_in, real_b, mode), self.pool_B.query(view_fake_b),
                gan_mode, o.lambda_gp)
            loss_d = losses["D_B"]
            if self.two_sided:
                losses["D_A"] = discriminator_loss(
                    self.netD_A, real_a, self.pool_A.query(fake_a), gan_mode, o.lambda_gp)
                loss_d = loss_d + losses["D_A"]
        loss_d.backward()
        self.optimizers["D"].step()
        return {k: v.detach() for k, v in losses.items()}

    def extra_state(self) -> dict:
        pools = {"pool_B": self.pool_B}
        if self.two_sided:
            pools["pool_A"] = self.pool_A
        return {name: pool.state() for name, pool in pools.items()}

    def load_extra_state(self, state: dict) -> None:
        device = next(self.parameters()).device
        for name, images in state.items():
            getattr(self, name).load(images, device)
