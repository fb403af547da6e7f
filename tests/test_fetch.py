"""Harvesting from a real WMTS (MapProxy serving GeoPackage caches that GDAL wrote from a GeoTIFF)
and from a local XYZ server that injects faults."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from servers import serve

from aerocolor import __version__
from aerocolor.errors import AerocolorError

XYZ_TILES = [(x, y) for x in range(29090, 29094) for y in range(12900, 12903)]  # real z15 tiles


def read_records(folder: Path) -> dict[str, dict]:
    lines = (folder / "manifest.jsonl").read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


class FaultyTiles(BaseHTTPRequestHandler):
    """XYZ tiles from real z15 historical photo files, with scripted faults per tile."""

    folder: Path
    faults: dict[str, list[str]] = {}
    hits: dict[str, int] = {}
    agents: set[str] = set()
    delay = 0.0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server naming)
        key = self.path.lstrip("/")
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            self.agents.add(self.headers.get("User-Agent", ""))
            queue = self.faults.get(key, [])
            fault = queue[0] if queue else ""
            if fault != "always500" and queue:
                queue.pop(0)
        time.sleep(self.delay)
        z, x, y = key.removesuffix(".png").split("/")
        body_file = self.folder / f"gsi_z{z}_{x}_{y}.png"
        if fault in ("500", "always500"):
            return self.reply(500, b"server error", "text/plain")
        if fault == "absent" or not body_file.is_file():
            return self.reply(404, b"no tile", "text/plain")
        body = body_file.read_bytes()
        if fault == "slow":
            time.sleep(1.5)
        if fault == "html":
            return self.reply(200, b"<html>maintenance</html>", "image/png")
        if fault == "short":  # the body stops before its announced length
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.close_connection = True
            return
        if fault == "truncated":  # a complete HTTP answer holding half a PNG
            body = body[: len(body) // 2]
        self.reply(200, body, "image/png")

    def reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def xyz(shared_data: Path) -> dict:
    FaultyTiles.folder = shared_data / "old" / "train" / "gsi1960s"
    server, url = serve(FaultyTiles, wsgi=False)
    yield {"template": url + "/{z}/{x}/{y}.png", "handler": FaultyTiles}
    server.shutdown()


def xyz_bbox() -> str:
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    west = tms.bounds(morecantile.Tile(XYZ_TILES[0][0], XYZ_TILES[0][1], 15))
    east = tms.bounds(morecantile.Tile(XYZ_TILES[-1][0], XYZ_TILES[-1][1], 15))
    pad = 1e-4  # stay inside the outer tiles
    return f"{west.left + pad},{east.bottom + pad},{east.right - pad},{west.top - pad}"


def test_wmts_two_layers_match_the_raster(wmts, tmp_path):
    import rasterio

    out = tmp_path / "tiles"
    x0, y0, x1, y1 = wmts["grid_bbox"]
    common = ["--bbox", f"{x0},{y0},{x1},{y1}", "--bbox-crs", "EPSG:32618", "--zoom", "2",
              "-o", out, "-q"]
    dry = run_cli("fetch", wmts["url"], "-l", "town", "-l", "town_gray", *common, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: 32 tiles" in dry.output and " MB " in dry.output
    assert not out.exists()

    res = run_cli("fetch", wmts["url"], "-l", "town", "-l", "town_gray", *common)
    assert res.exit_code == 0, res.output
    assert "32 tiles: 12 fetched" in res.output and "20 blank" in res.output
    assert "6 aligned pairs" in res.output
    colour, gray = read_records(out / "town"), read_records(out / "town_gray")
    ok = {p: r for p, r in colour.items() if r["status"] == "ok"}
    cells = sorted((r["row"], r["col"]) for r in ok.values())
    assert cells == [(r, c) for r in (0, 1) for c in (0, 1, 2)]
    assert sum(r["status"] == "blank" for r in colour.values()) == 10
    assert set(ok) == {p for p, r in gray.items() if r["status"] == "ok"}

    b = wmts["bounds"]
    left = min(r["bounds"][0] for r in ok.values())
    top = max(r["bounds"][3] for r in ok.values())
    assert (left, top) == pytest.approx((b.left, b.top))
    right = max(r["bounds"][2] for r in ok.values())
    bottom = min(r["bounds"][1] for r in ok.values())
    assert 0 <= right - b.right < 1280 and 0 <= b.bottom - bottom < 1280  # partial edge tiles

    from PIL import Image

    with rasterio.open(wmts["raster"]) as src:
        for rec in ok.values():
            win = src.window(*rec["bounds"])
            truth = src.read([1, 2, 3], window=win, boundless=True, fill_value=0)
            tile = np.asarray(Image.open(out / "town" / rec["path"]).convert("RGBA"))
            alpha = tile[:, :, 3] > 0
            assert alpha.sum() > 0
            assert np.array_equal(tile[:, :, :3][alpha], np.moveaxis(truth, 0, -1)[alpha])
            gray = np.asarray(Image.open(out / "town_gray" / rec["path"]).convert("LA"))[:, :, 0]
            assert np.array_equal(gray[alpha], truth[1][alpha])

    pairs = (out / "pairs.csv").read_text().splitlines()
    assert pairs[0] == "matrix,row,col,town,town_gray" and len(pairs) == 7

    again = run_cli("fetch", wmts["url"], "-l", "town", "-l", "town_gray", *common)
    assert "0 fetched" in again.output and "12 already here" in again.output
    assert "20 blank" in again.output


def test_wmts_rest_capabilities_and_area_files(wmts, tmp_path):
    import pyogrio.raw
    import shapely

    from aerocolor.data.area import file_area
    from aerocolor.data.harvest import plan_tiles
    from aerocolor.data.sources import http_session, open_wmts

    layer = open_wmts(wmts["rest"], "town", http_session())
    assert "{TileRow}" in layer.template and "/wmts/" in layer.template
    matrix = layer.matrix(resolution=6.0)
    assert matrix.ground_resolution == pytest.approx(5.0)
    b = wmts["bounds"]
    # a triangle over the top-left tile and the one to its right only
    poly = shapely.Polygon([(b.left + 10, b.top - 10), (b.left + 1500, b.top - 10),
                            (b.left + 10, b.top - 600)])
    formats = (("aoi.geojson", "GeoJSON"), ("aoi.gpkg", "GPKG"), ("aoi.shp", "ESRI Shapefile"))
    for name, driver in formats:
        pyogrio.raw.write(tmp_path / name, np.array([shapely.to_wkb(poly)], dtype=object), [], [],
                          driver=driver, geometry_type="Polygon", crs="EPSG:32618")
        jobs = plan_tiles(layer, matrix, file_area(tmp_path / name))
        assert sorted((j.row, j.col) for j in jobs) == [(0, 0), (0, 1)], name


@pytest.mark.parametrize("args, message", [
    (["-l", "no_such_layer", "--bbox", "-72.2,18.48,-72.18,18.5"], "unknown layer 'no_such_layer'"),
    (["-l", "town", "--bbox", "2.2,48.8,2.4,48.9"], "lies outside layer 'town'"),
    (["-l", "town", "--bbox", "-72.2,18.48,-72.18,18.5", "--zoom", "7"], "no zoom level '7'"),
])
def test_wmts_bad_input_is_one_line(wmts, tmp_path, args, message):
    res = run_cli("fetch", wmts["url"], "--zoom", "2", *args, "-o", tmp_path)
    assert isinstance(res.exception, AerocolorError)
    assert message in str(res.exception) and "\n" not in str(res.exception)


def test_unreachable_url_and_bad_raster_area(tmp_path, shared_data):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_cli("fetch", f"http://127.0.0.1:{port}/wmts", "-l", "x", "--bbox", "0,0,1,1")
    assert isinstance(res.exception, AerocolorError)
    assert "cannot reach 127.0.0.1" in str(res.exception)

    from PIL import Image

    scan = tmp_path / "scan.tif"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(scan)
    res = run_cli("fetch", "http://127.0.0.1:1/{z}/{x}/{y}.png", "--aoi", scan, "-z", "3")
    assert isinstance(res.exception, AerocolorError) and "not georeferenced" in str(res.exception)


def test_xyz_faults_are_retried_reported_and_resumed(xyz, tmp_path, shared_data):
    h = xyz["handler"]
    tiles = [f"15/{x}/{y}.png" for x, y in XYZ_TILES]  # as requested: z/x/y
    local = [f"15/{y}/{x}.png" for x, y in XYZ_TILES]  # as stored: matrix/row/col
    h.hits.clear()
    h.faults.clear()
    h.faults.update({tiles[0]: ["500", "500"], tiles[1]: ["short"], tiles[2]: ["truncated"],
                     tiles[3]: ["html"], tiles[4]: ["slow"], tiles[5]: ["always500"],
                     tiles[6]: ["absent"]})
    out = tmp_path / "xyz"
    args = ["fetch", xyz["template"], "--bbox", xyz_bbox(), "-z", "15", "-o", out, "-q",
            "--retries", "2", "--backoff", "0.01", "--timeout", "0.8", "--workers", "3"]
    res = run_cli(*args)
    assert res.exit_code == 1, res.output
    assert f"{len(tiles)} tiles: {len(tiles) - 2} fetched" in res.output
    assert "1 absent" in res.output and "1 failed" in res.output
    assert f"failed: xyz/{local[5]}: HTTP 500 after 3 tries" in res.output
    for t in tiles[:5]:
        assert h.hits[t] >= 2, t
    records = read_records(out / "xyz")
    x, y = XYZ_TILES[2]
    source = h.folder / f"gsi_z15_{x}_{y}.png"
    assert (out / "xyz" / local[2]).read_bytes() == source.read_bytes()
    assert records[local[5]]["status"] == "failed" and records[local[6]]["status"] == "missing"
    assert not list((out / "xyz").rglob(".*.png")), "no temporary file is left behind"
    assert all(a.startswith(f"aerocolor/{__version__}") for a in h.agents)

    h.faults.clear()
    before = dict(h.hits)
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    assert "1 fetched" in res.output and f"{len(tiles) - 2} already here" in res.output
    changed = {k for k in h.hits if h.hits[k] != before.get(k)}
    assert changed == {tiles[5]}, "only the failed tile is requested again"


def test_killed_harvest_resumes_without_refetching(xyz, tmp_path):
    h = xyz["handler"]
    h.hits.clear()
    h.faults.clear()
    h.delay = 0.25
    out = tmp_path / "killed"
    args = ["fetch", xyz["template"], "--bbox", xyz_bbox(), "-z", "15", "-o", str(out), "-q",
            "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "aerocolor", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / "xyz").rglob("[0-9]*.png"))) < 3:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    h.delay = 0.0
    done = {f"15/{p.stem}/{p.parent.name}.png" for p in (out / "xyz").rglob("[0-9]*.png")}
    assert 3 <= len(done) < len(XYZ_TILES)
    before = dict(h.hits)
    res = run_cli(*args)
    assert res.exit_code == 0, res.output
    assert f"{len(done)} already here" in res.output
    assert all(h.hits[t] == before[t] for t in done), "finished tiles are not downloaded again"
    assert len(read_records(out / "xyz")) == len(XYZ_TILES)


def test_whole_world_dry_run_is_counted_without_listing_tiles(xyz, tmp_path):
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    top, bottom = tms.tile(0, 85, 15).y, tms.tile(0, -85, 15).y
    expected = (bottom - top + 1) * 2**15  # every column, the rows between the two latitudes
    out = tmp_path / "world"
    res = run_cli("fetch", xyz["template"], "--bbox", "-180,-85,180,85", "-z", "15", "-o", out, "--dry-run")
    assert res.exit_code == 0, res.output
    assert f"dry run: {expected:,} tiles" in res.output
    assert f"the fetch would need --max-tiles {expected}" in res.output
    assert not out.exists()


def test_polygon_plans_list_exactly_the_tiles_sharing_area_with_the_polygon():
    import shapely

    from aerocolor.data.area import Area
    from aerocolor.data.harvest import plan_tiles
    from aerocolor.data.sources import open_xyz

    layer = open_xyz("http://127.0.0.1:9/{z}/{x}/{y}.png")
    # concave, with a hole, and a second part: rows cross the polygon in several runs
    outer = [(139.60, 35.60), (139.70, 35.60), (139.70, 35.68), (139.65, 35.64), (139.60, 35.68)]
    hole = [(139.62, 35.61), (139.68, 35.61), (139.68, 35.63), (139.62, 35.63)]
    area = Area(shapely.MultiPolygon([(outer, [hole]), shapely.box(139.75, 35.6, 139.76, 35.62)]), "EPSG:4326", "aoi")
    for zoom in ("13", "15"):
        matrix = layer.matrix(zoom)
        plan = plan_tiles(layer, matrix, area)
        assert not plan.rectangle
        (r0, r1), (c0, c1) = plan.rows, plan.cols
        brute = [(r, c) for r in range(r0 - 1, r1 + 2) for c in range(c0 - 1, c1 + 2)
                 if plan.geometry.intersection(shapely.box(*matrix.tile_bounds(r, c))).area > 0]
        listed = [(j.row, j.col) for j in plan]
        assert listed == brute and plan.count == len(brute), zoom
        assert [(plan.job_at(i).row, plan.job_at(i).col) for i in range(plan.count)] == listed
        assert (r1 - r0 + 1) * (c1 - c0 + 1) > plan.count  # the polygon, not its bounding box
