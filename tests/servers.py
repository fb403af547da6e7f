"""Servers on loopback for the tests: a helper that starts one in a thread, the web app in a
thread with its client helpers, and MapProxy serving a real GeoTIFF as WMTS layers (the ``wmts``
fixture, registered in conftest.py)."""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

TOWN = "geo/town_rgbn_5m.tif"
LAYERS = ("town", "town_gray")


def serve(app_or_handler, wsgi: bool) -> tuple[object, str]:
    """Start a server on a free loopback port in a daemon thread."""
    if wsgi:
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, app_or_handler, threaded=True)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 0), app_or_handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def wait_done(url: str, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


def fetch_image(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url).content)))


@contextmanager
def app_in_thread(settings):
    """The app served by uvicorn in this process (for settings the session server lacks)."""
    import socket
    import threading

    import uvicorn

    from aerocolor.web import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


def gpkg_from_bands(raster: Path, bands: list[int], out: Path, table: str) -> None:
    """A GeoPackage tile cache written by GDAL from some bands of a GeoTIFF."""
    import rasterio
    import rasterio.shutil

    with rasterio.open(raster) as src:
        data = src.read(bands)
        profile = {**src.profile, "count": len(bands), "driver": "GTiff"}
    tif = out.with_suffix(".tif")
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(data)
    rasterio.shutil.copy(tif, out, driver="GPKG", TILE_FORMAT="PNG", RASTER_TABLE=table)


@pytest.fixture(scope="session")
def wmts(shared_data: Path, tmp_path_factory) -> dict:
    """MapProxy serving the town raster as two WMTS layers: colour and a gray one."""
    import rasterio
    from mapproxy.wsgiapp import make_wsgi_app

    raster = shared_data / TOWN
    work = tmp_path_factory.mktemp("wmts")
    gpkg_from_bands(raster, [1, 2, 3], work / "town.gpkg", "town")
    gpkg_from_bands(raster, [2], work / "town_gray.gpkg", "town_gray")
    with rasterio.open(raster) as src:
        bounds, res = src.bounds, src.res[0]
    # the grid GDAL chose: origin at the raster's top-left, 256-pixel tiles, levels 20/10/5 m
    grid_bbox = [bounds.left, bounds.top - 4 * 256 * res, bounds.left + 4 * 256 * res, bounds.top]
    config = {
        "services": {"wmts": {"restful": True, "kvp": True}},
        "layers": [{"name": n, "title": n, "sources": [f"{n}_cache"]} for n in LAYERS],
        "caches": {f"{n}_cache": {
            "grids": ["town_grid"], "sources": [], "format": "image/png",
            "cache": {"type": "geopackage", "filename": str(work / f"{n}.gpkg"),
                      "table_name": n.upper()}} for n in LAYERS},
        "grids": {"town_grid": {"srs": "EPSG:32618", "bbox": grid_bbox, "bbox_srs": "EPSG:32618",
                                "origin": "nw", "res": [4 * res, 2 * res, res],
                                "tile_size": [256, 256]}},
        "globals": {"image": {"paletted": False}},
    }
    (work / "mapproxy.yaml").write_text(yaml.safe_dump(config))
    server, url = serve(make_wsgi_app(str(work / "mapproxy.yaml")), wsgi=True)
    yield {"url": f"{url}/service", "rest": f"{url}/wmts/1.0.0/WMTSCapabilities.xml",
           "raster": raster, "bounds": bounds, "grid_bbox": grid_bbox}
    server.shutdown()
