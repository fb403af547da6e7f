"""Synthetic ageing: determinism, its parameters, its use in training data, and that it brings
gray versions of modern colour imagery closer to real historical photos (FID)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from aerocolor.color import gray_from_rgb, to_numpy, to_tensor
from aerocolor.data.ageing import Ageing, build_ager, parse_ageing
from aerocolor.errors import ConfigError
from aerocolor.imageio import list_images, read_image

FID_IMAGES = 12  # per set: the FID network costs about a second an image on two CPU cores
OFF = {k: 0 for k in ("film", "contrast", "gamma", "fade", "grain", "blur", "vignette", "dust",
                      "scratches", "jpeg")}


@pytest.fixture(scope="module")
def colour(shared_data):
    return read_image(list_images(shared_data / "color/val/maps")[0])[:160, :160]


def test_ageing_is_deterministic_per_generator(colour):
    ager = build_ager({"seed": 3})
    a = ager(colour, np.random.default_rng(7))
    assert a.shape == colour.shape[:2] and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1
    assert np.array_equal(a, ager(colour, np.random.default_rng(7)))
    assert not np.array_equal(a, ager(colour, np.random.default_rng(8)))
    assert not np.array_equal(a, build_ager({"seed": 4})(colour, np.random.default_rng(7)))
    gray = to_numpy(gray_from_rgb(to_tensor(colour)))
    assert np.abs(a - gray).mean() > 0.02, "default ageing visibly changes the image"


def test_every_effect_off_is_plain_luminance_and_film_differs(colour):
    gray = to_numpy(gray_from_rgb(to_tensor(colour)))
    plain = build_ager(OFF)(colour, np.random.default_rng(0))
    assert np.allclose(plain, gray, atol=1e-4)
    green = np.zeros((4, 4, 3), np.float32)
    green[..., 1] = 1.0
    film_green = build_ager({**OFF, "film": 1})(green, np.random.default_rng(0))
    plain_green = build_ager(OFF)(green, np.random.default_rng(0))
    assert film_green.max() < plain_green.min() - 0.05  # film is less green-sensitive than the eye
    assert np.allclose(build_ager(OFF)(gray, np.random.default_rng(0)), gray, atol=1e-6)
    for effect in ("grain", "blur", "vignette", "jpeg", "fade"):
        aged = build_ager({**OFF, effect: 1})(colour, np.random.default_rng(0))
        assert np.abs(aged - gray).mean() > 1e-3, effect


def test_bad_parameters_name_the_fix():
    with pytest.raises(ConfigError, match="unknown ageing effect.*sepia.*choose from"):
        build_ager({"sepia": 1})
    with pytest.raises(ConfigError, match="must be >= 0"):
        build_ager({"grain": -1})
    assert parse_ageing("grain=0.8, seed=2") == Ageing(grain=0.8, seed=2)
    assert parse_ageing("default") == Ageing()


def test_training_samples_are_aged_deterministically(shared_data):
    from aerocolor.data.datasets import PairedColorDataset

    folder = [str(shared_data / "color/val/neon")]
    aged = PairedColorDataset(folder, 64, seed=1, age={"grain": 1.0, "seed": 5})
    plain = PairedColorDataset(folder, 64, seed=1)
    a, b, p = aged[(0, 2)], aged[(0, 2)], plain[(0, 2)]
    assert a["gray"].shape == (1, 64, 64)
    assert (a["gray"] == b["gray"]).all()
    assert (a["rgb"] == p["rgb"]).all(), "ageing changes only the gray input"
    assert (a["gray"] - p["gray"]).abs().mean() > 0.01


def test_preview_writes_a_grid(shared_data, tmp_path):
    from aerocolor.cli import app

    out = tmp_path / "grid.png"
    res = CliRunner().invoke(app, ["age-preview", str(shared_data / "color/val/aid"),
                                   "--count", "2", "--variants", "3", "--age", "grain=1,seed=2",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    grid = read_image(out)
    assert grid.shape == (2 * 150, 5 * 150, 3)  # rows: image, plain gray, 3 aged versions
    assert not np.array_equal(grid[:, 300:450], grid[:, 450:600])


def test_aged_colour_is_closer_to_real_old_photos_by_fid(shared_data):
    from aerocolor.fid import fid_features, frechet_distance

    old = [read_image(p) for p in list_images(shared_data / "old/val/gsi1960s")[:FID_IMAGES]]
    files = list_images(shared_data / "color/val/maps")
    colour = [read_image(p)[:256, :256] for p in files[:: len(files) // FID_IMAGES][:FID_IMAGES]]
    plain = [to_numpy(gray_from_rgb(to_tensor(c))) for c in colour]
    ager = build_ager({})
    aged = [ager(c, np.random.default_rng(i)) for i, c in enumerate(colour)]
    feats_old = fid_features(old, batch_size=16)
    fid_plain = frechet_distance(fid_features(plain, batch_size=16), feats_old)
    fid_aged = frechet_distance(fid_features(aged, batch_size=16), feats_old)
    print(f"FID to old photos: plain {fid_plain:.1f}, aged {fid_aged:.1f}")
    assert fid_aged < fid_plain, (fid_aged, fid_plain)
