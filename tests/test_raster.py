"""Seamless tiled colorization and georeferenced raster output, on real imagery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import tiny_overrides
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin
from typer.testing import CliRunner

from aerocolor.cli import app
from aerocolor.colorize import to_gray
from aerocolor.config import load_config
from aerocolor.errors import AerocolorError
from aerocolor.imageio import read_image
from aerocolor.infer import Colorizer, default_model_path, load_colorizer
from aerocolor.infer.colorizer import TileRamps, axis_tiles, tile_plan
from aerocolor.infer.raster import GrayRaster, RasterOptions, colorize_raster
from aerocolor.metrics import lab_of, mean_ciede2000
from aerocolor.train import train


def run_cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output

TILE, OVERLAP = 256, 64
JOIN = 400  # the mosaic's real images are 400 px a side


@pytest.fixture(scope="session")
def instance_norm_checkpoint(shared_data: Path, tmp_path_factory) -> Path:
    """A tiny pix2pix with a 3-block ResNet generator and instance norm (lab mode), trained
    briefly on real colour images."""
    out = tmp_path_factory.mktemp("tiny_resnet")
    cfg = load_config(None, tiny_overrides(out, 20, **{
        "model.color_mode": "lab", "model.nets.norm": "instance",
        "model.nets.netG": "resnet_3blocks", "data.train": f"[{shared_data / 'color/train/neon'}]",
    }))
    train(cfg, progress=False)
    return out / "last.pt"


@pytest.fixture(scope="session")
def mosaic(shared_data: Path) -> np.ndarray:
    """A 1024 x 1024 colour mosaic of nine real NEON orthophotos (validation site)."""
    files = sorted((shared_data / "color/val/neon").glob("*.jpg"))[:9]
    imgs = [read_image(f) for f in files]
    rows = [np.concatenate(imgs[i:i + 3], axis=1) for i in (0, 3, 6)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:1024, :1024])


def border_energy_ratio(colour: np.ndarray, tile: int, overlap: int) -> float:
    """Gradient energy of the colour (a*, b*) across tile borders (tile edges and the middle
    of each overlap, +-1 px) over that elsewhere; the mosaic's own image joins are left out."""
    ab = lab_of(colour)[..., 1:]
    ratios = []
    for axis in (0, 1):
        energy = (np.diff(ab, axis=axis) ** 2).sum(-1).mean(axis=1 - axis)
        n = colour.shape[axis]
        starts, side = axis_tiles(n, tile, overlap)
        lines = {e for s in starts for e in (s, s + side) if 0 < e < n}
        lines |= {(b + a + side) // 2 for a, b in zip(starts, starts[1:], strict=False)}
        border = np.zeros(n - 1, bool)
        for e in lines:
            border[e - 2:e + 1] = True
        joins = np.zeros(n - 1, bool)
        for j in range(JOIN, n, JOIN):
            joins[j - 4:j + 3] = True
        ratios.append(energy[border & ~joins].mean() / energy[~border & ~joins].mean())
    return float(max(ratios))


def test_feather_weights_cover_and_crop_edges():
    h, w = 700, 900
    tops, lefts, th, tw = tile_plan(h, w, TILE, OVERLAP)
    assert (len(tops), len(lefts)) == (4, 5) and th <= TILE and tw <= TILE
    rows, cols = TileRamps(tops, th), TileRamps(lefts, tw)
    wsum = np.zeros((h, w), np.float32)
    for i, t in enumerate(tops):
        for j, lft in enumerate(lefts):
            wt = np.outer(rows.ramp(i), cols.ramp(j))
            if lft > 0:
                assert wt[:, :OVERLAP // 4].max() == 0  # the edge facing a neighbour is cropped
            wsum[t:t + th, lft:lft + tw] += wt
    # neighbours cross-fade to a constant sum, whatever each overlap is
    assert np.allclose(wsum, 1.0, atol=1e-5)


def check_seams(colorizer: Colorizer, colour_truth: np.ndarray) -> tuple[float, float]:
    gray = to_gray(colour_truth)
    whole = colorizer.colorize(gray, tile=max(gray.shape), overlap=OVERLAP)
    tiled = colorizer.colorize(gray, tile=TILE, overlap=OVERLAP, batch_size=4)
    de = mean_ciede2000(tiled, whole)
    # relative to the untiled output on the same rows: a model's own periodic texture (stride-2
    # layers) can put more energy on some rows whatever the tiling
    ratio = border_energy_ratio(tiled, TILE, OVERLAP) / border_energy_ratio(whole, TILE, OVERLAP)
    assert de < 1.0, f"whole and tiled differ by mean CIEDE2000 {de:.2f}"
    assert ratio <= 1.05, f"gradient energy along tile borders is {ratio:.3f}x that of the untiled output"
    return de, ratio


def test_no_seams_with_instance_norm_model(instance_norm_checkpoint, mosaic):
    torch.manual_seed(0)
    colorizer = load_colorizer(instance_norm_checkpoint, "cpu")
    assert colorizer.generator.instance_norm, "the model should have instance norms"
    check_seams(colorizer, mosaic[:768, :768])
    # inputs above the statistics budget pool them over blocks spread across the input: here 8
    # of the 9 blocks of 256 px. (A briefly trained tiny model is far more sensitive to its
    # statistics than a trained one: with 4 of the 9 blocks, i.e. 4 of the 9 photos, it drifts.)
    colorizer.norm_sample_pixels, colorizer.norm_sample_side = 8 * 256 * 256, 256
    check_seams(colorizer, mosaic[:768, :768])


def test_no_seams_with_bundled_model(mosaic):
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    check_seams(load_colorizer(None, "cpu"), mosaic[:768, :768])


def write_geotiff(path: Path, bands: np.ndarray, nodata=None, **extra) -> dict:
    profile = {"driver": "GTiff", "width": bands.shape[2], "height": bands.shape[1],
               "count": bands.shape[0], "dtype": bands.dtype.name, "crs": "EPSG:32617",
               "transform": from_origin(403000.0, 3285000.0, 0.5, 0.5), "nodata": nodata,
               **extra}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
    return profile


@pytest.fixture(scope="module")
def gray16_raster(mosaic, tmp_path_factory) -> Path:
    """A 16-bit, low-contrast scan-like GeoTIFF of the real mosaic with a nodata corner."""
    gray = to_gray(mosaic[:600, :700])
    data = (3000 + gray * 20000).astype(np.uint16)
    data[:120, :150] = 0
    path = tmp_path_factory.mktemp("geo") / "scan16.tif"
    write_geotiff(path, data[None], nodata=0)
    return path


def test_cli_raster_keeps_georeference_and_nodata(instance_norm_checkpoint, gray16_raster,
                                                   tmp_path):
    out = tmp_path / "out"
    run_cli("colorize", str(instance_norm_checkpoint), str(gray16_raster), "-o", str(out),
            "--tile", str(TILE), "--overlap", str(OVERLAP), "--device", "cpu")
    result = out / "scan16_color.tif"
    with rasterio.open(gray16_raster) as src, rasterio.open(result) as dst:
        assert (dst.crs, dst.transform, dst.shape, dst.nodata) == (src.crs, src.transform,
                                                                   src.shape, src.nodata)
        assert dst.count == 3 and dst.dtypes[0] == "uint16"
        assert dst.profile["tiled"] and dst.compression.name.lower() == "deflate"
        colour = dst.read()
        assert (colour[:, :120, :150] == 0).all()  # nodata stays nodata
        valid = colour[:, 120:, :]
        assert (valid.max(axis=0) > 0).all()  # and no valid pixel became a hole
        assert np.ptp(valid[0].astype(float) - valid[2]) > 0  # coloured, not gray


def test_cog_with_overviews_and_skip_existing(instance_norm_checkpoint, shared_data, tmp_path):
    src_path = shared_data / "geo/town_rgbn_5m.tif"
    args = ["colorize", str(instance_norm_checkpoint), str(src_path.parent / "town_*.tif"),
            "-o", str(tmp_path), "--cog", "--tile", "256", "--device", "cpu", "--skip-existing", "--compare"]
    run_cli(*args)
    result = tmp_path / "town_rgbn_5m_color.tif"
    with rasterio.open(src_path) as src, rasterio.open(result) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert dst.overviews(1), "a COG has overviews"
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        colour = dst.read([1, 2, 3]).transpose(1, 2, 0).astype(np.float32) / 255
    # --compare: a gray | colour preview of the raster, at full size when it is small
    preview = read_image(tmp_path / "town_rgbn_5m_compare.png")
    h, w = colour.shape[:2]
    assert preview.shape == (h, 2 * w + 8, 3)
    assert np.abs(preview[:, w + 8:] - colour).max() < 1 / 255 + 1e-6
    assert np.abs(preview[:, :w, 0] - preview[:, :w, 1]).max() == 0  # the gray panel is gray
    assert np.corrcoef(preview[:, :w, 0].ravel(), to_gray(colour).ravel())[0, 1] > 0.9
    stamp = result.stat().st_mtime_ns
    run_cli(*args)
    assert result.stat().st_mtime_ns == stamp  # an existing output is skipped


def test_raster_stream_matches_in_memory_colorize(instance_norm_checkpoint, shared_data, tmp_path):
    """The raster path and the image path are one path: same tiles, same blend, same colours."""
    colorizer = load_colorizer(instance_norm_checkpoint, "cpu")
    src_path = shared_data / "geo/town_rgbn_5m.tif"
    opts = RasterOptions(tile=TILE, overlap=OVERLAP)
    out = colorize_raster(colorizer, src_path, tmp_path / "town.tif", opts, progress=False)
    with rasterio.open(src_path) as src:
        gray = GrayRaster(src, opts, "town").read(0, 0, src.height, src.width)
        rgb = src.read([1, 2, 3]).transpose(1, 2, 0) / 255.0
    assert np.allclose(gray, to_gray(rgb.astype(np.float32)), atol=1e-4)  # luminance of 1-3
    expected = colorizer.colorize(gray, tile=TILE, overlap=OVERLAP)
    with rasterio.open(out) as dst:
        got = dst.read().transpose(1, 2, 0) / 255.0
    assert np.abs(got - expected).max() <= 1.0 / 255 + 1e-6


def test_band_choice_and_percentile_stretch(gray16_raster, shared_data):
    with rasterio.open(shared_data / "geo/town_rgbn_5m.tif") as src:
        nir = GrayRaster(src, RasterOptions(band=4), "town").read(0, 0, 50, 60)
        assert np.allclose(nir, src.read(4, window=((0, 50), (0, 60))) / 255.0)
        with pytest.raises(AerocolorError, match="no band 5"):
            GrayRaster(src, RasterOptions(band=5), "town")
    with rasterio.open(gray16_raster) as src:
        stretched = GrayRaster(src, RasterOptions(), "scan").read(0, 0, src.height, src.width)
        plain = GrayRaster(src, RasterOptions(stretch="none"), "scan").read(
            0, 0, src.height, src.width)
    valid = np.ones(stretched.shape, bool)
    valid[:120, :150] = False
    lo, hi = np.percentile(stretched[valid], [0.5, 99.5])
    assert lo < 0.02 and hi > 0.98  # the low-contrast scan now spans the range
    assert np.percentile(plain[valid], 99.5) < 0.4


def test_match_resolution_returns_to_input_grid(instance_norm_checkpoint, shared_data, tmp_path):
    ckpt = torch.load(instance_norm_checkpoint, weights_only=True)
    ckpt["config"]["model"]["ground_resolution"] = 0.2  # the NEON raster is 0.1 m
    coarse = tmp_path / "coarse.pt"
    torch.save(ckpt, coarse)
    src_path = shared_data / "geo/neon_osbs_029_rgb_0.1m.tif"
    opts = RasterOptions(tile=TILE, overlap=OVERLAP, match_resolution=True)
    out = colorize_raster(load_colorizer(coarse, "cpu"), src_path, tmp_path / "m.tif", opts,
                          progress=False)
    with rasterio.open(src_path) as src, rasterio.open(out) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        colour = dst.read().transpose(1, 2, 0) / 255.0
        truth = src.read().transpose(1, 2, 0) / 255.0
    # lab mode keeps the input's own full-resolution lightness
    assert np.abs(to_gray(colour.astype(np.float32)) - to_gray(truth.astype(np.float32))).mean() < 0.02
    with pytest.raises(AerocolorError, match="no ground resolution"):
        colorize_raster(load_colorizer(instance_norm_checkpoint, "cpu"), src_path,
                        tmp_path / "n.tif", opts, progress=False)


def test_alpha_mask_is_kept(instance_norm_checkpoint, mosaic, tmp_path):
    rgb = (mosaic[:300, :300] * 255).astype(np.uint8).transpose(2, 0, 1)
    alpha = np.full((1, 300, 300), 255, np.uint8)
    alpha[0, 200:, 200:] = 0
    path = tmp_path / "rgba.tif"
    write_geotiff(path, np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES")
    out = colorize_raster(load_colorizer(instance_norm_checkpoint, "cpu"), path,
                          tmp_path / "rgba_color.tif", RasterOptions(), progress=False)
    with rasterio.open(out) as dst:
        assert MaskFlags.per_dataset in dst.mask_flag_enums[0]
        mask = dst.dataset_mask()
    assert (mask[200:, 200:] == 0).all() and (mask[:200] == 255).all()
