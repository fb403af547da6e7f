import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from aerocolor import color


def test_lab_round_trip_is_exact_to_1e_3():
    rgb = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    rgb[0, :, 0, 0] = 0.0  # black and white corners
    rgb[0, :, 0, 1] = 1.0
    back = color.lab_to_rgb(color.rgb_to_lab(rgb), clip=False)
    assert (back - rgb).abs().max().item() < 1e-3


def test_lab_matches_scikit_image():
    rgb = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    ours = color.rgb_to_lab(color.to_tensor(rgb))[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - rgb2lab(rgb)).max() < 0.05


def test_gray_has_the_lightness_of_the_colour_image():
    rgb = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    gray = color.gray_from_rgb(rgb)
    L = color.rgb_to_lab(rgb)[:, :1]
    assert (color.lightness_from_gray(gray) - L).abs().max().item() < 0.2  # 8-bit free, float only
    neutral = color.rgb_to_lab(gray.expand(-1, 3, -1, -1))
    assert neutral[:, 1:].abs().max().item() < 1e-3


@pytest.mark.parametrize("mode", ["rgb", "lab"])
def test_target_output_round_trip(mode):
    rgb = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    gray = color.gray_from_rgb(rgb)
    back = color.rgb_from_output(color.net_target(rgb, mode), gray, mode)
    # lab recombination replaces L* by the gray's (equal) L*; rgb is exact
    assert (back - rgb).abs().max().item() < 2e-3
    x = color.net_input(gray, mode)
    assert x.min() >= -1.0001 and x.max() <= 1.0001


def test_lab_output_is_upsampled_and_keeps_full_resolution_lightness():
    gray = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    ab = torch.zeros(1, 2, 16, 16)
    out = color.rgb_from_output(ab, gray, "lab")
    assert out.shape == (1, 3, 64, 64)
    # zero ab on the input's L* gives back the gray image itself, detail included
    assert (out - gray.expand(-1, 3, -1, -1)).abs().max().item() < 2e-3


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="hsv"):
        color.check_mode("hsv")
