"""Cutting real GeoTIFFs into georeferenced tiles and preparing spatially split training sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from aerocolor.color import gray_from_rgb, to_numpy, to_tensor
from aerocolor.errors import AerocolorError
from aerocolor.imageio import read_image


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_tiles_keep_pixels_and_georeference(shared_data, town_tiles):
    import rasterio
    from rasterio.windows import Window

    records = manifest(town_tiles)
    # 515 x 403 pixels: 8 full columns + 1 flush with the edge, 6 rows + 1
    assert len(records) == 9 * 7 and all(r["status"] == "ok" for r in records)
    with rasterio.open(shared_data / "geo/town_rgbn_5m.tif") as src:
        for r in records[::10]:
            win = Window(*r["window"])
            assert r["bounds"] == pytest.approx(list(src.window_bounds(win)))
            assert r["crs"] == "EPSG:32618"
            truth = np.moveaxis(src.read([1, 2, 3], window=win), 0, -1)
            tile = np.asarray(Image.open(town_tiles / r["path"]))
            assert np.array_equal(tile, truth)
    last = max(records, key=lambda r: r["window"][0])
    assert last["window"][0] + last["window"][2] == 515


def test_mostly_nodata_tiles_are_skipped(shared_data, tmp_path):
    import rasterio

    src_path = shared_data / "geo/neon_osbs_029_rgb_0.1m.tif"
    with rasterio.open(src_path) as src:
        data, profile = src.read(), src.profile
    data[:, :, :300] = profile["nodata"]  # three quarters of the width become no-data
    masked = tmp_path / "masked.tif"
    with rasterio.open(masked, "w", **profile) as dst:
        dst.write(data)
    res = run_cli("tiles", masked, "-o", tmp_path / "t", "--size", "100", "--max-nodata", "0.5")
    assert res.exit_code == 0, res.output
    records = manifest(tmp_path / "t")
    kept = [r for r in records if r["status"] == "ok"]
    assert len(records) == 16 and len(kept) == 4
    assert all(r["window"][0] == 300 for r in kept)
    assert "4 tiles written" in res.output and "12 mostly no-data skipped" in res.output


def test_non_georeferenced_scan(tmp_path):
    scan = tmp_path / "scan.png"
    Image.fromarray((np.arange(200 * 300) % 251).astype(np.uint8).reshape(200, 300)).save(scan)
    res = run_cli("tiles", scan, "-o", tmp_path / "t", "--size", "100", "--require-georef")
    assert isinstance(res.exception, AerocolorError) and "not georeferenced" in str(res.exception)
    res = run_cli("tiles", scan, "-o", tmp_path / "t", "--size", "100")
    assert res.exit_code == 0, res.output
    records = manifest(tmp_path / "t")
    assert len(records) == 6 and all(r["bounds"] is None and r["crs"] is None for r in records)


def test_prepare_splits_by_block_and_writes_every_layout(shared_data, town_tiles, tmp_path):
    old = tmp_path / "old_tiles"
    assert run_cli("tiles", shared_data / "geo/neon_osbs_029_rgb_0.1m.tif", "-o", old,
                   "--size", "50", "--bands", "2").exit_code == 0
    out = tmp_path / "ds"
    args = ["--color", town_tiles, "--old", old, "--block", "2", "--val", "0.2", "--test", "0.2"]
    res = run_cli("prepare", *args, "-o", out, "--aligned")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "splits.csv")))
    assert len(rows) == 63 + 64
    split_of_block: dict[str, set] = {}
    for r in rows:
        split_of_block.setdefault(r["block"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_block.values()), "a block never straddles splits"
    colour = [r for r in rows if r["set"] == "color"]
    shares = {s: sum(r["split"] == s for r in colour) / len(colour)
              for s in ("train", "val", "test")}
    assert shares["train"] > 0.3 and shares["val"] > 0.05 and shares["test"] > 0.05

    train = sorted((out / "paired/train/color").glob("*.png"))
    assert len(train) == sum(r["split"] == "train" for r in colour)
    rgb = read_image(train[0])
    gray = read_image(out / "paired/train/gray" / train[0].name)
    assert np.abs(gray - to_numpy(gray_from_rgb(to_tensor(rgb)))).max() <= 1 / 255 + 1e-6
    ab = read_image(out / "aligned/train" / train[0].name)
    assert ab.shape == (64, 128, 3) and np.allclose(ab[:, 64:], rgb)
    n_old = {s: len(list((out / f"unpaired/{s}A").glob("*"))) for s in ("train", "val", "test")}
    assert sum(n_old.values()) == 64 and n_old["train"] > 0
    assert len(list((out / "unpaired/trainB").glob("*"))) == len(train)

    aged = tmp_path / "aged"
    assert run_cli("prepare", *args, "-o", aged, "--age", "grain=1,seed=1").exit_code == 0
    aged_gray = read_image(aged / "paired/train/gray" / train[0].name)
    assert np.abs(aged_gray - gray).mean() > 0.01


def test_prepare_needs_a_manifest(tmp_path):
    res = run_cli("prepare", "--color", tmp_path, "-o", tmp_path / "out")
    assert isinstance(res.exception, AerocolorError) and "no manifest.jsonl" in str(res.exception)
