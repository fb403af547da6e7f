"""Tiles of a raster whose input is all no-data are not run through the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from aerocolor.colorize import to_gray
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.raster import GrayRaster, RasterOptions, colorize_raster

TILE, OVERLAP = 256, 32
EMPTY_COLS = 420  # columns of no-data on the left of the raster


class CountingGenerator:
    """A colorizer's real generator, counting the tiles it is called on."""

    def __init__(self, inner):
        self.inner, self.tiles = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, gray, *args):
        self.tiles += gray.shape[0]
        return self.inner(gray, *args)


@pytest.fixture(scope="module")
def raster_with_nodata(shared_data: Path, tmp_path_factory) -> Path:
    """A 768 x 768 uint8 GeoTIFF of four real aerial photos, nodata 0 in its left 420 columns."""
    photos = [to_gray(read_image(f))[:384, :384] for f in sorted((shared_data / "color/val/maps").glob("*.jpg"))[:4]]
    gray = np.concatenate([np.concatenate(photos[:2], axis=1), np.concatenate(photos[2:], axis=1)])
    data = np.clip(np.round(gray * 255), 1, 255).astype(np.uint8)
    data[:, :EMPTY_COLS] = 0
    path = tmp_path_factory.mktemp("nodata") / "mosaic.tif"
    with rasterio.open(path, "w", driver="GTiff", width=768, height=768, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=from_origin(580000.0, 4510000.0, 1.0, 1.0),
                       nodata=0) as dst:
        dst.write(data[None])
    return path


def colorize_counting(path: Path, out: Path) -> int:
    colorizer = load_colorizer(default_model_path(), "cpu", "torch")
    counting = CountingGenerator(colorizer.generator)
    colorizer.generator = counting
    colorize_raster(colorizer, path, out, RasterOptions(tile=TILE, overlap=OVERLAP), progress=False)
    return counting.tiles


def test_nodata_only_tiles_are_skipped_with_the_same_output(raster_with_nodata, tmp_path, monkeypatch):
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    colorizer = load_colorizer(default_model_path(), "cpu", "torch")
    windows = [(t, lft, th, tw) for tops, lefts, th, tw in [colorizer.plan(768, 768, TILE, OVERLAP)]
               for t in tops for lft in lefts]
    empty = sum(lft + tw <= EMPTY_COLS for _, lft, _, tw in windows)
    assert 0 < empty < len(windows)

    skipped = colorize_counting(raster_with_nodata, tmp_path / "skipped.tif")
    monkeypatch.setattr(GrayRaster, "blank_test", lambda self: None)  # every tile run, as before
    every = colorize_counting(raster_with_nodata, tmp_path / "every.tif")
    assert every == len(windows)
    assert skipped == len(windows) - empty

    with rasterio.open(tmp_path / "skipped.tif") as a, rasterio.open(tmp_path / "every.tif") as b:
        assert a.nodata == b.nodata == 0
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.read()[:, :, :EMPTY_COLS] == 0).all() and (a.read()[:, :, EMPTY_COLS:] > 0).any()


def test_a_raster_without_nodata_tests_no_tile(shared_data: Path):
    with rasterio.open(shared_data / "geo/town_rgbn_5m.tif") as src:  # no nodata tag, no mask
        assert GrayRaster(src, RasterOptions(), "town").blank_test() is None
