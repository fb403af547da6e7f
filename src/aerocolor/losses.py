"""GAN objectives, the WGAN-GP gradient penalty, the masked reconstruction loss, PatchNCE and the
KL term of a Gaussian latent code."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

GAN_MODES = ("vanilla", "lsgan", "wgangp", "hinge")


def gan_loss(pred: torch.Tensor, real: bool, mode: str, for_discriminator: bool = True) -> torch.Tensor:
    """Adversarial loss of discriminator output ``pred`` (logits) judged as real or fake.

    For the generator call with ``real=True, for_discriminator=False``.
    """
    if mode == "vanilla":
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "lsgan":
        return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))
    if mode == "wgangp":
        return -pred.mean() if real else pred.mean()
    if mode == "hinge":
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1 - pred).mean() if real else F.relu(1 + pred).mean()
    raise ValueError(f"unknown gan_mode {mode!r}: choose one of {', '.join(GAN_MODES)}")


def gradient_penalty(net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     weight: float = 10.0, target_norm: float = 1.0) -> torch.Tensor:
    """WGAN-GP: weight * E[(||grad_x D(x)||_2 - target_norm)^2] at random points between real
    and fake samples (one mixing factor per sample)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = net_d(mixed)
    (grad,) = torch.autograd.grad(out, mixed, grad_outputs=torch.ones_like(out), create_graph=True)
    norms = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt()
    return weight * ((norms - target_norm) ** 2).mean()


def discriminator_loss(net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor, mode: str,
                       gp_weight: float = 10.0) -> torch.Tensor:
    """Discriminator objective on a batch of real and (detached) fake inputs; with ``wgangp``
    the gradient penalty is added."""
    fake = fake.detach()
    loss = 0.5 * (gan_loss(net_d(real), True, mode) + gan_loss(net_d(fake), False, mode))
    if mode == "wgangp":
        loss = loss + gradient_penalty(net_d, real, fake, gp_weight)
    return loss


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error over the pixels where ``mask`` (N,1,H,W) is 1."""
    if mask is None:
        return F.l1_loss(pred, target)
    diff = (pred - target).abs() * mask
    return diff.sum() / (mask.sum() * pred.shape[1]).clamp(min=1.0)


def mean_color_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error between each image's mean colour in ``pred`` and in ``target``.

    The means are per image and channel, over the pixels where ``mask`` (N,1,H,W) is 1. Pixel L1
    mixes the scene-wide colour cast with local detail; this term isolates the cast.
    """
    if mask is None:
        mask = torch.ones_like(pred[:, :1])
    area = mask.sum(dim=(2, 3)).clamp(min=1.0)
    pred_mean = (pred * mask).sum(dim=(2, 3)) / area
    target_mean = (target * mask).sum(dim=(2, 3)) / area
    return (pred_mean - target_mean).abs().mean()


def masked_moments(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (C,) over a whole batch, where ``mask`` is 1."""
    if mask is None:
        mask = torch.ones_like(x[:, :1])
    area = mask.sum().clamp(min=1.0)
    mean = (x * mask).sum(dim=(0, 2, 3)) / area
    var = ((x - mean.view(1, -1, 1, 1)).pow(2) * mask).sum(dim=(0, 2, 3)) / area
    return mean, (var + 1e-8).sqrt()


def moment_match_l1(pred: torch.Tensor, ref: torch.Tensor, pred_mask: torch.Tensor | None = None,
                    ref_mask: torch.Tensor | None = None) -> torch.Tensor:
    """L1 between the per-channel means and standard deviations of two unpaired batches: pulls
    the colour distribution of ``pred`` (e.g. colorized old photos) towards that of ``ref`` (real
    colour photos) without pairing, so their colours are as strong and varied."""
    pm, ps = masked_moments(pred, pred_mask)
    rm, rs = masked_moments(ref.detach(), ref_mask)
    return (pm - rm).abs().mean() + (ps - rs).abs().mean()


def patch_nce(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """PatchNCE (InfoNCE over patches), one value per query patch, shape (N, P).

    ``query`` and ``key`` (N, P, C) are unit vectors of the same P patch positions of an output
    and its input; patch i of the output should match patch i of the input (the positive) rather
    than the other patches of the same image (the negatives). Keys get no gradient.
    """
    logits = torch.bmm(query, key.detach().transpose(1, 2)) / temperature  # N, P, P
    target = torch.arange(query.shape[1], device=query.device).expand(query.shape[0], -1)
    return F.cross_entropy(logits.transpose(1, 2), target, reduction="none")


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over the code and the batch (as the reference)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
