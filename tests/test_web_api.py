"""The web app's JSON API against the real server (``aerocolor serve``) and real images."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
from PIL import Image
from servers import app_in_thread, fetch_image, wait_done

from aerocolor.color import gray_from_rgb, to_tensor
from aerocolor.imageio import read_image, to_uint8
from aerocolor.infer import default_model_path, load_colorizer

OLD_TILE = "old/val/gsi1960s"
MAPS = "color/val/maps"


def first_image(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))[0]


def submit(url: str, content: bytes, filename: str = "photo.png", **form) -> httpx.Response:
    return httpx.post(f"{url}/api/jobs", files={"image": (filename, content)},
                      data={"model": "tiny.pt", **form}, timeout=60)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries almost no data (a "bomb")."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_models_offer_tiny_and_bundled(web_server):
    models = {m["id"]: m for m in httpx.get(f"{web_server}/api/models").json()}
    assert models["tiny.pt"]["method"] == "pix2pix" and models["tiny.pt"]["multimodal"] is False
    assert sum(m["default"] for m in models.values()) == 1
    assert ("default" in models) == default_model_path().is_file()


@pytest.mark.parametrize("folder", [OLD_TILE, MAPS])
def test_upload_colorize_download(web_server, shared_data, folder):
    source = first_image(shared_data / folder)
    response = submit(web_server, source.read_bytes(), filename=f"../../{source.name}")
    assert response.status_code == 202, response.text
    job = wait_done(web_server, response.json()["id"])
    assert job["state"] == "done" and job["progress"] == 1.0
    assert job["georeferenced"] is False and job["results"][0]["geotiff"] is None
    assert (job["notes"] != []) == (folder == MAPS)  # colour inputs are converted, and say so

    result = httpx.get(web_server + job["results"][0]["png"])
    assert result.headers["content-type"] == "image/png"
    assert f'filename="{source.stem}_color.png"' in result.headers["content-disposition"]
    colour = np.asarray(Image.open(io.BytesIO(result.content))).astype(np.float32) / 255
    gray = fetch_image(web_server + job["gray"])
    assert colour.shape == (job["height"], job["width"], 3) == (*gray.shape, 3)
    original = read_image(source)
    assert gray.shape == original.shape[:2]
    # lab mode keeps the input's L*: the colour result's gray version is the uploaded gray
    regray = gray_from_rgb(to_tensor(colour))[0, 0].numpy()
    assert np.abs(regray - gray / 255.0).mean() < 0.02
    assert colour.std(axis=2).mean() > 0.005  # and it has colour
    no_geotiff = httpx.get(web_server + job["results"][0]["png"].replace(".png", ".tif"))
    assert no_geotiff.status_code == 409


def test_geotiff_download_keeps_georeference(web_server, shared_data, tmp_path):
    source = shared_data / "geo" / "town_rgbn_5m.tif"
    response = submit(web_server, source.read_bytes(), filename=source.name)
    assert response.status_code == 202, response.text
    job = wait_done(web_server, response.json()["id"])
    assert job["state"] == "done" and job["georeferenced"] is True
    download = httpx.get(web_server + job["results"][0]["geotiff"])
    assert download.status_code == 200
    assert 'filename="town_rgbn_5m_color.tif"' in download.headers["content-disposition"]
    (tmp_path / "out.tif").write_bytes(download.content)
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(source) as src:
        assert out.crs == src.crs and out.transform == src.transform
        assert (out.width, out.height, out.count) == (src.width, src.height, 3)
        assert out.dtypes[0] == "uint8"
        rgb = np.moveaxis(out.read(), 0, -1)
    assert np.array_equal(rgb, fetch_image(web_server + job["results"][0]["png"]))


def test_geotiff_download_keeps_nodata(web_server, shared_data, tmp_path):
    """A scan with a no-data corner (as map tiles of old photos have) keeps it in the result."""
    with rasterio.open(shared_data / "geo" / "neon_osbs_029_rgb_0.1m.tif") as src:
        profile, data = src.profile, src.read()
    rows, cols = np.indices(data.shape[1:])
    corner = rows + cols < 120
    data[:, corner] = 0
    data[:, ~corner] = np.maximum(data[:, ~corner], 1)
    scan = tmp_path / "scan.tif"
    with rasterio.open(scan, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(data)
    job = wait_done(web_server, submit(web_server, scan.read_bytes(), "scan.tif").json()["id"])
    (tmp_path / "out.tif").write_bytes(httpx.get(web_server + job["results"][0]["geotiff"]).content)
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.nodata == 0 and out.crs == profile["crs"]
        colour = out.read()
    assert (colour[:, corner] == 0).all()
    assert (colour[:, ~corner].max(axis=0) > 0).all()


def test_unsupported_and_corrupt_files_get_4xx(web_server, shared_data):
    real_png = first_image(shared_data / OLD_TILE).read_bytes()
    real_jpeg = first_image(shared_data / MAPS).read_bytes()
    cases = {
        b"just some text, not an image": (415, "unsupported file type"),
        real_png[:300]: (422, "corrupt or truncated"),
        real_jpeg[:2000]: (422, "corrupt or truncated"),
        b"II*\x00" + b"\x07" * 500: (422, "corrupt or truncated"),
    }
    for content, (status, words) in cases.items():
        response = submit(web_server, content)
        assert response.status_code == status, response.text
        assert words in response.json()["detail"]


def test_oversize_files_and_images_are_refused_before_decoding(web_server, tmp_path):
    too_many_bytes = submit(web_server, b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20))
    assert too_many_bytes.status_code == 413 and "2 MB" in too_many_bytes.json()["detail"]

    def chunked():  # no Content-Length: the limit holds while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(48):
            yield bytes(64 * 1024)
    streamed = httpx.post(f"{web_server}/api/jobs", content=chunked(),
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413

    response = submit(web_server, png_header_only(3000, 2000))
    assert response.status_code == 413 and "3000x2000" in response.json()["detail"]
    assert submit(web_server, png_header_only(60000, 60000)).status_code == 413

    sparse = tmp_path / "sparse.tif"
    with rasterio.open(sparse, "w", driver="GTiff", width=40000, height=40000, count=1,
                       dtype="uint8", crs="EPSG:32618",
                       transform=rasterio.Affine(5, 0, 0, 0, -5, 0),
                       tiled=True, compress="deflate", sparse_ok=True):
        pass
    assert sparse.stat().st_size < 2**20
    response = submit(web_server, sparse.read_bytes(), filename="sparse.tif")
    assert response.status_code == 413 and "40000x40000" in response.json()["detail"]


def test_jobs_only_by_their_unguessable_id(web_server, shared_data):
    content = first_image(shared_data / OLD_TILE).read_bytes()
    ids = [submit(web_server, content).json()["id"] for _ in range(2)]
    assert ids[0] != ids[1] and all(len(i) >= 22 for i in ids)
    for i in ids:
        wait_done(web_server, i)
    for bad in ("0", "..%2F..%2Fetc%2Fpasswd", ids[0][:-1] + ("A" if ids[0][-1] != "A" else "B")):
        assert httpx.get(f"{web_server}/api/jobs/{bad}").status_code == 404
        assert httpx.get(f"{web_server}/api/jobs/{bad}/results/0.png").status_code == 404
    assert httpx.get(f"{web_server}/api/jobs/{ids[0]}/results/7.png").status_code == 404


def test_bad_parameters_get_422(web_server, shared_data):
    content = first_image(shared_data / OLD_TILE).read_bytes()
    response = submit(web_server, content, model="../tiny.pt")
    assert response.status_code == 422 and "unknown model" in response.json()["detail"]
    assert httpx.post(f"{web_server}/api/jobs", data={"model": "tiny.pt"}).status_code == 422


def test_saturation_scales_the_colours_and_is_checked(web_server, shared_data):
    content = first_image(shared_data / OLD_TILE).read_bytes()
    spread = {}
    for saturation in ("0", "1"):
        response = submit(web_server, content, saturation=saturation)
        assert response.status_code == 202, response.text
        job = wait_done(web_server, response.json()["id"])
        assert job["state"] == "done", job
        spread[saturation] = fetch_image(web_server + job["results"][0]["png"]).astype(np.float32).std(axis=2).mean()
    assert spread["0"] < 0.6 < spread["1"]  # saturation 0 gives gray (up to 8-bit rounding)
    response = submit(web_server, content, saturation="2.5")
    assert response.status_code == 422 and "saturation 2.5" in response.json()["detail"]


def test_openapi_documents_the_api(web_server):
    spec = httpx.get(f"{web_server}/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/models", "/api/jobs", "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/results/{index}.tif"} <= set(paths)
    assert {"413", "415", "422", "503"} <= set(paths["/api/jobs"]["post"]["responses"])
    page = httpx.get(web_server)
    assert page.status_code == 200 and "/static/app.js" in page.text


def test_binds_to_loopback_by_default(web_server):
    table = Path("/proc/net/tcp")
    if not table.is_file():
        pytest.skip("no /proc/net/tcp on this system to read listening addresses from")
    port = int(web_server.rsplit(":", 1)[1])
    listening = [line.split()[1] for line in table.read_text().splitlines()[1:]
                 if line.split()[3] == "0A"]
    assert f"0100007F:{port:04X}" in listening
    assert f"00000000:{port:04X}" not in listening


def test_results_expire_and_are_deleted(web_models, shared_data, tmp_path):
    from aerocolor.web import WebSettings

    settings = WebSettings(models_dir=web_models, with_default=False, device="cpu",
                           keep_seconds=0.5, clean_every=0.1, work_dir=tmp_path)
    with app_in_thread(settings) as url:
        job_id = submit(url, first_image(shared_data / OLD_TILE).read_bytes()).json()["id"]
        assert wait_done(url, job_id)["state"] == "done"
        assert (tmp_path / job_id / "color-0.png").is_file()
        time.sleep(1.0)
        assert httpx.get(f"{url}/api/jobs/{job_id}").status_code == 404
        assert not (tmp_path / job_id).exists()


def test_multimodal_model_gives_several_samples(shared_data, tmp_path):
    from conftest import ROOT, tiny_overrides

    from aerocolor.config import load_config
    from aerocolor.train import train
    from aerocolor.web import WebSettings

    cfg = load_config(ROOT / "configs" / "bicyclegan.yaml", tiny_overrides(tmp_path / "run", 2, **{
        "model.color_mode": "lab", "model.options.nef": 8, "model.options.encoder_blocks": 4,
        "data.train": f"[{shared_data / 'color/train/neon'}]", "data.val": "[]",
        "optim.batch_size": 2}))
    train(cfg, progress=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "run" / "last.pt").rename(tmp_path / "models" / "bicycle.pt")
    settings = WebSettings(models_dir=tmp_path / "models", with_default=False, device="cpu")
    with app_in_thread(settings) as url:
        [model] = httpx.get(f"{url}/api/models").json()
        assert model["id"] == "bicycle.pt" and model["multimodal"] is True
        content = first_image(shared_data / OLD_TILE).read_bytes()
        for bad in (0, 99):
            assert submit(url, content, model="bicycle.pt", samples=bad).status_code == 422
        response = submit(url, content, model="bicycle.pt", samples=3)
        job = wait_done(url, response.json()["id"])
        assert job["state"] == "done" and len(job["results"]) == 3
        samples = [fetch_image(url + r["png"]) for r in job["results"]]
        assert all(np.any(samples[a] != samples[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
        # each sample is the model's colouring with the job's seeded latent codes
        gray = fetch_image(url + job["gray"]).astype(np.float32) / 255
        colorizer = load_colorizer(tmp_path / "models" / "bicycle.pt", "cpu")
        codes = colorizer.latent_codes(3, job["seed"])
        for sample, z in zip(samples, codes):
            expected = to_uint8(colorizer.colorize(gray, z=z[None])).astype(np.int16)
            assert np.abs(sample.astype(np.int16) - expected).max() <= 1
        download = httpx.get(url + job["results"][2]["png"])
        assert 'filename="photo_color_3.png"' in download.headers["content-disposition"]


def test_serve_without_models_says_what_to_give(tmp_path, capsys):
    from aerocolor.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--models", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "missing: no such folder; give --models a folder" in capsys.readouterr().err
