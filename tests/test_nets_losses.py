import pytest
import torch
import torch.nn as nn

from aerocolor.config import NetworkConfig
from aerocolor.losses import discriminator_loss, gan_loss, gradient_penalty, masked_l1, mean_color_l1
from aerocolor.nets import build_discriminator, build_generator, size_multiple
from aerocolor.nets.generators import SceneContext, UNetGenerator


@pytest.mark.parametrize("name,depth", [("unet_128", 7), ("unet_256", 8)])
def test_named_unets_have_the_reference_depth(name, depth):
    cfg = NetworkConfig(netG=name, ngf=4)
    g = build_generator(cfg, 1, 3)
    assert g.depth == depth and size_multiple(cfg) == 2**depth
    x = torch.randn(1, 1, 2**depth, 2**depth)
    assert g(x).shape == (1, 3, 2**depth, 2**depth)


def test_unet_depth_parameter_allows_small_crops_and_places_dropout_like_the_reference():
    g = UNetGenerator(1, 2, depth=6, ngf=8, dropout=True)
    assert g(torch.randn(2, 1, 64, 64)).shape == (2, 2, 64, 64)
    with_dropout = [i for i, block in enumerate(g.up) if any(isinstance(m, nn.Dropout) for m in block)]
    assert with_dropout == [4]  # the ngf*8 levels between level 4 and the innermost
    g8 = UNetGenerator(1, 3, depth=8, ngf=4)
    assert [i for i, b in enumerate(g8.up) if any(isinstance(m, nn.Dropout) for m in b)] == [4, 5, 6]


@pytest.mark.parametrize("blocks", [6, 9])
def test_resnet_generator(blocks):
    cfg = NetworkConfig(netG=f"resnet_{blocks}blocks", ngf=8, norm="instance")
    g = build_generator(cfg, 1, 2)
    assert g(torch.randn(1, 1, 48, 48)).shape == (1, 2, 48, 48)
    assert sum(type(m).__name__ == "ResnetBlock" for m in g) == blocks


def test_unknown_generator_is_named():
    with pytest.raises(ValueError, match="unet_999x"):
        build_generator(NetworkConfig(netG="unet_999x"), 1, 3)


def test_patchgan_sees_70_pixel_patches():
    d = build_discriminator(NetworkConfig(ndf=8), 4)
    assert d(torch.randn(1, 4, 256, 256)).shape == (1, 1, 30, 30)
    d5 = build_discriminator(NetworkConfig(ndf=8, netD="n_layers", n_layers_D=5), 4)
    assert d5(torch.randn(1, 4, 256, 256)).shape[-1] < 30
    assert build_discriminator(NetworkConfig(ndf=8, netD="pixel"), 4)(torch.randn(1, 4, 9, 9)).shape == (1, 1, 9, 9)


def test_gan_losses_on_known_values():
    p = torch.tensor([2.0, -1.0])
    assert gan_loss(p, True, "lsgan").item() == pytest.approx(((1 - 2) ** 2 + (1 + 1) ** 2) / 2)
    assert gan_loss(p, False, "wgangp").item() == pytest.approx(0.5)
    assert gan_loss(p, True, "hinge").item() == pytest.approx((0 + 2) / 2)
    assert gan_loss(p, False, "hinge").item() == pytest.approx((3 + 0) / 2)
    assert gan_loss(p, True, "hinge", for_discriminator=False).item() == pytest.approx(-0.5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(p, torch.ones(2))
    assert gan_loss(p, True, "vanilla").item() == pytest.approx(bce.item())


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so the penalty is known by hand."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_matches_hand_computation():
    w = torch.full((1, 2, 3, 3), 0.5)  # ||w|| = 0.5 * sqrt(18)
    d = LinearCritic(w)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    expected = 10.0 * (0.5 * 18**0.5 - 1.0) ** 2
    assert gradient_penalty(d, real, fake, 10.0).item() == pytest.approx(expected, rel=1e-5)
    # the penalty is differentiable in the critic's weights: d/dw of (||w||-1)^2 * 10
    gp = gradient_penalty(d, real, fake, 10.0)
    gp.backward()
    norm = w.norm()
    assert torch.allclose(d.w.grad, 10 * 2 * (norm - 1) * w / norm, rtol=1e-4)


def test_wgangp_discriminator_loss_includes_the_penalty():
    d = LinearCritic(torch.full((1, 2, 3, 3), 0.5))
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    plain = 0.5 * (-d(real).mean() + d(fake).mean())
    total = discriminator_loss(d, real, fake, "wgangp", gp_weight=10.0)
    assert (total - plain).item() == pytest.approx(10.0 * (0.5 * 18**0.5 - 1.0) ** 2, rel=1e-4)


def test_masked_l1_ignores_masked_pixels():
    pred, target = torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4)
    target[..., :2, :] = 100.0
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2, :] = 0
    assert masked_l1(pred, target, mask).item() == pytest.approx(1.0)


def test_mean_color_l1_compares_each_images_mean_over_the_mask():
    target = torch.zeros(2, 2, 4, 4)
    target[0, 0] = 3.0  # image 0: a cast of 3 in channel 0
    target[..., :2, :] += 50.0  # masked off
    pred = torch.zeros(2, 2, 4, 4)
    pred[1, 1, :, ::2], pred[1, 1, :, 1::2] = 1.0, -1.0  # image 1: local detail, no cast
    mask = torch.ones(2, 1, 4, 4)
    mask[..., :2, :] = 0
    assert mean_color_l1(pred, target, mask).item() == pytest.approx(3.0 / 4)  # (3 + 0 + 0 + 0) / 4
    assert masked_l1(pred, target, mask).item() == pytest.approx((3.0 * 8 + 8) / 32)  # pixel L1 sees the detail


def _context_generator(context: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cfg = NetworkConfig(netG="resnet_6blocks", ngf=8, norm="batch", context=context, init_type="kaiming")
    g = build_generator(cfg, 1, 2)
    for m in g.modules():  # a trained context: the identity start would hide it
        if isinstance(m, SceneContext):
            nn.init.normal_(m.film[-1].weight, 0.0, 0.5)
    return g.eval()


def test_scene_context_sees_the_whole_image():
    """A change far outside the convolutions' reach changes a patch's colour only through the context."""
    x = torch.rand(1, 1, 64, 512)
    far = x.clone()
    far[..., 256:] = 0.95  # bright, 256 px away from the patch [0, 64)
    with torch.no_grad():
        for context in (False, True):
            g = _context_generator(context)
            change = (g(x) - g(far))[..., :64].abs().max().item()
            assert (change > 1e-3) if context else (change < 1e-6), (context, change)


def test_scene_context_starts_as_the_identity_and_is_middle_only():
    plain, ctx = _context_generator(False), build_generator(
        NetworkConfig(netG="resnet_6blocks", ngf=8, norm="batch", context=True), 1, 2).eval()
    missing = ctx.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".context." in k for k in missing)
    assert [i for i, m in enumerate(ctx) if getattr(m, "context", None) is not None] == [12]  # 3rd of 6 blocks
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(plain(x), ctx(x))


def test_scene_context_needs_a_resnet():
    with pytest.raises(ValueError, match="nets.context needs a ResNet"):
        build_generator(NetworkConfig(netG="unet_256", context=True), 1, 3)
