"""Streaming a raster with a reader and a writer thread beside the network: no tile lost, rows in
order, the same bytes as the single-threaded path."""

from __future__ import annotations

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

from aerocolor.infer import load_colorizer
from aerocolor.infer.colorizer import row_reads, tile_plan
from aerocolor.infer.raster import GrayRaster, RasterOptions, ReadAhead, WriteBehind, colorize_raster


def test_threaded_stream_equals_single_threaded_and_in_memory(tiny_checkpoint, shared_data, tmp_path):
    torch.set_num_threads(1)
    colorizer = load_colorizer(tiny_checkpoint, "cpu")
    # a float raster with NaN holes: the mask band is written too
    with rasterio.open(shared_data / "geo/town_rgbn_5m.tif") as src:
        data = src.read([1, 2, 3]).astype(np.float32) / 255
    data[:, 40:90, 100:180] = np.nan
    path = tmp_path / "town_float.tif"
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3,
                       dtype="float32", crs="EPSG:32618", transform=from_origin(0, 0, 5, 5)) as dst:
        dst.write(data)
    opts = RasterOptions(tile=64, overlap=16, batch_size=3)  # 10 tile rows, 9 tiles each
    outs = {threads: colorize_raster(colorizer, path, tmp_path / f"out_{threads}.tif", opts, progress=False,
                                     io_threads=threads)
            for threads in (True, False)}
    assert outs[True].read_bytes() == outs[False].read_bytes()
    with rasterio.open(path) as src:
        gray = GrayRaster(src, opts, "town").read(0, 0, src.height, src.width)
    expected = colorizer.colorize(gray, tile=64, overlap=16, batch_size=3)
    with rasterio.open(outs[True]) as dst:
        got = dst.read().transpose(1, 2, 0) / 255.0
        mask = dst.dataset_mask()
    valid = ~np.isnan(data).any(axis=0)
    assert ((mask > 0) == valid).all()
    assert np.abs(got - expected)[valid].max() <= 1 / 255 + 1e-6  # every row, in place


def test_read_ahead_serves_the_plan_in_order_and_other_reads_directly():
    calls: list[tuple[int, ...]] = []

    def read(*window):
        calls.append(window)
        return np.full((window[2], window[3]), window[0], np.float32)

    tops, _, th, _ = tile_plan(300, 50, 64, 16)
    plan = row_reads(tops, th, 50)
    with ReadAhead(read, plan) as ahead:
        assert ahead(0, 0, 10, 10).shape == (10, 10)  # not in the plan: read at once
        got = [ahead(*w) for w in plan]
    assert [g[0, 0] for g in got] == [w[0] for w in plan]
    assert [g.shape for g in got] == [(w[2], w[3]) for w in plan]
    assert calls == [(0, 0, 10, 10), *plan]  # each planned read made once, in order


def test_write_behind_keeps_order_and_raises_errors_in_the_caller():
    seen: list[int] = []
    with WriteBehind(seen.append) as writer:
        for k in range(20):
            writer.put(k)
    assert seen == list(range(20))

    def fail(k):
        if k == 3:
            raise ValueError("disk full")
        seen.append(k)

    seen.clear()
    try:
        with WriteBehind(fail) as writer:
            for k in range(10):
                writer.put(k)
    except ValueError as e:
        assert "disk full" in str(e)
    else:
        raise AssertionError("the writer's error was lost")
    assert seen == [0, 1, 2]
