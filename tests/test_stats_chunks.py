"""The whole-input statistics pass, accumulated a few blocks at a time, equals the one-batch pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aerocolor.colorize import to_gray
from aerocolor.config import load_config
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.colorizer import array_reader, norm_sample_windows, tile_windows
from aerocolor.infer.generator import merge_moments
from aerocolor.infer.loading import torch_colorizer
from aerocolor.methods import METHODS

SIDE = 128  # statistics blocks of this side, 8 of them, run 2 at a time: 4 chunks
BLOCKS, PER_CHUNK = 8, 2


@pytest.fixture(scope="module")
def gray(shared_data: Path) -> np.ndarray:
    """Four real aerial photos (New York maps set, 600 px) as one 1200 x 1200 gray image."""
    photos = [to_gray(read_image(f)) for f in sorted((shared_data / "color/val/maps").glob("*.jpg"))[:4]]
    return np.concatenate([np.concatenate(photos[:2], axis=1), np.concatenate(photos[2:], axis=1)])


def stats_both_ways(colorizer, gray: np.ndarray, tile: int = 512):
    """(one-batch statistics, chunked statistics, number of chunks) of a gray image."""
    colorizer.norm_sample_pixels, colorizer.norm_sample_side = BLOCKS * SIDE * SIDE, SIDE
    windows = tile_windows(*gray.shape, tile, 64, colorizer.generator.size_multiple)
    sample = norm_sample_windows(*gray.shape, colorizer.norm_sample_pixels, SIDE)
    z = colorizer.latent(None)
    colorizer.stats_chunk_pixels = 10**9
    assert len(colorizer.stats_chunks(sample, SIDE * SIDE, z)) == 1
    whole = colorizer.norm_stats(array_reader(gray), windows, z)
    colorizer.stats_chunk_pixels = PER_CHUNK * SIDE * SIDE
    chunks = len(colorizer.stats_chunks(sample, SIDE * SIDE, z))
    return whole, colorizer.norm_stats(array_reader(gray), windows, z), chunks


def as_arrays(stats) -> list[np.ndarray]:
    if isinstance(stats, np.ndarray):
        return [stats]
    return [t.numpy() for pair in stats.values() for t in pair]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_bundled_model_statistics_chunked_equal_one_batch(backend, gray):
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    colorizer = load_colorizer(None, "cpu", backend)
    assert colorizer.generator.stats_waves(None) == 1, "one scene-context pool: one pass over the chunks"
    whole, chunked, chunks = stats_both_ways(colorizer, gray)
    assert chunks == BLOCKS // PER_CHUNK
    pairs = list(zip(as_arrays(whole), as_arrays(chunked), strict=True))
    for a, b in pairs:
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        # the tolerance is tight: one block's own statistics are far from the sample's
        one = colorizer.generator.accumulated_norm_stats(
            lambda: [(torch.from_numpy(gray[:SIDE, :SIDE].copy())[None, None], None, None)])
        assert max(np.abs(a - b).max() for a, b in zip(as_arrays(whole), as_arrays(one), strict=True)) > 1e-2
        # and the colours made with either agree
        tiles = torch.from_numpy(gray[:256, :512].copy())[None, None]
        diff = (colorizer.generator(tiles, None, whole) - colorizer.generator(tiles, None, chunked)).abs().max()
    assert diff < 1e-4


def test_instance_norm_net_statistics_accumulated_layer_by_layer(gray):
    """An instance-norm generator needs a pass over the chunks per norm, each normalising the
    norms before it with their finished statistics; it gives what one batch gives."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.method=pix2pix", "model.nets.norm=instance", "model.nets.ngf=8",
                             "model.nets.netG=resnet_2blocks", "model.color_mode=lab"])
    colorizer = torch_colorizer(METHODS["pix2pix"](cfg.model, training=False).eval(), cfg)
    waves = colorizer.generator.stats_waves(None)
    assert waves == 3 + 2 * 2 + 2
    # by default such nets keep one batch: a pass per norm would cost more than it saves
    sample = norm_sample_windows(*gray.shape, BLOCKS * SIDE * SIDE, SIDE)
    colorizer.stats_chunk_pixels = PER_CHUNK * SIDE * SIDE
    assert len(colorizer.stats_chunks(sample, SIDE * SIDE, None)) == 1
    colorizer.max_stats_waves = waves
    whole, chunked, chunks = stats_both_ways(colorizer, gray)
    assert chunks == BLOCKS // PER_CHUNK and len(chunked) == waves
    for a, b in zip(as_arrays(whole), as_arrays(chunked), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_merge_moments_is_the_moments_of_the_union():
    rng = np.random.default_rng(0)
    parts = [rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32) for n in (10, 300, 37)]
    mean, var = merge_moments([(len(p), torch.from_numpy(p.mean(0)), torch.from_numpy(p.var(0)))
                               for p in parts])
    union = np.concatenate(parts)
    np.testing.assert_allclose(mean.numpy(), union.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var.numpy(), union.var(0), rtol=1e-5)
