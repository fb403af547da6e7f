"""Colour references: placement on the input grid (GDAL), partial cover, map services, the
no-reference path, ONNX parity, bad references, and the training references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from cli_helpers import run_cli, run_main
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from aerocolor.checkpoint import save_checkpoint
from aerocolor.config import ReferenceConfig, load_config
from aerocolor.infer import torch_colorizer
from aerocolor.infer.reference import Grid, Reference, ReferenceSpec, raster_reference
from aerocolor.infer.torch_backend import load_method
from aerocolor.methods import get_method
from aerocolor.reference import coarse_planes, simulate_references
from aerocolor.train import warm_start

NAIP = "geo/naip_series"
TOWN = "geo/town_rgbn_5m.tif"
SCALE = 8
REF_TINY = ["model.color_mode=lab", "model.nets.netG=resnet_2blocks", "model.nets.ngf=8",
            "model.nets.ndf=8", "model.nets.context=true", "model.reference.enabled=true"]


def naip_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / NAIP).glob("*.tif"))


def write_window(src_path: Path, out: Path, window: Window, gray: bool = False) -> Path:
    """A window of a raster as its own GeoTIFF (bands 1-3, or their mean as one gray band)."""
    with rasterio.open(src_path) as src:
        data = src.read([1, 2, 3], window=window)
        profile = {**src.profile, "width": window.width, "height": window.height,
                   "transform": src.window_transform(window), "count": 1 if gray else 3}
    if gray:
        data = data.mean(axis=0, keepdims=True).astype(np.uint8)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def reprojected(src_path: Path, out: Path, crs: str, resolution: float, marker: tuple[int, int] | None = None
                ) -> Path:
    """``src_path`` warped by GDAL to ``crs`` at ``resolution``, with an optional pure-red 8x8
    block at source pixel ``marker`` (row, col) painted first."""
    with rasterio.open(src_path) as src:
        data = src.read([1, 2, 3])
        if marker is not None:
            r, c = marker
            data[:, r:r + 8, c:c + 8] = np.array([255, 0, 0], np.uint8)[:, None, None]
        transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds,
                                                      resolution=resolution)
        dest = np.zeros((3, h, w), np.uint8)
        reproject(data, dest, src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                  dst_crs=crs, src_nodata=0, dst_nodata=0)
    with rasterio.open(out, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs=crs,
                       transform=transform, nodata=0) as dst:
        dst.write(dest)
    return out


def grid_of(path: Path) -> Grid:
    with rasterio.open(path) as src:
        return Grid.of(src)


def truth_planes(path: Path) -> torch.Tensor:
    with rasterio.open(path) as src:
        rgb = torch.from_numpy(src.read([1, 2, 3]).astype(np.float32) / 255)[None]
    return coarse_planes(rgb, None, SCALE)[0]


def test_reference_in_another_crs_lands_on_the_input_grid(shared_data, tmp_path):
    files = naip_files(shared_data)
    inp = write_window(files[0], tmp_path / "input.tif", Window(200, 100, 320, 256))
    marker = (300, 400)  # source row, col of the red block in the full scene
    ref = reprojected(files[0], tmp_path / "ref_4326.tif", "EPSG:4326", 6e-5, marker)
    reference = raster_reference(ref, grid_of(inp), SCALE)
    assert reference.coarse.shape == (3, 32, 40)
    assert reference.covered == 1.0
    # where GDAL puts the marker's centre on the input grid
    with rasterio.open(files[0]) as full, rasterio.open(inp) as src:
        x, y = full.xy(marker[0] + 4, marker[1] + 4, offset="ul")
        row, col = src.index(x, y)
    a = reference.coarse[0]
    peak = np.unravel_index(int(torch.argmax(a)), tuple(a.shape))
    assert abs(peak[0] - row // SCALE) <= 1 and abs(peak[1] - col // SCALE) <= 1
    assert float(a.max()) > 0.5  # pure red: a* about 80
    # away from the marker the warped reference holds the scene's own coarse colours
    ref_plain = reprojected(files[0], tmp_path / "ref_plain.tif", "EPSG:4326", 6e-5)
    warped = raster_reference(ref_plain, grid_of(inp), SCALE).coarse
    own = truth_planes(inp)
    assert float((warped[:2] - own[:2]).abs().mean()) < 0.01


def test_partial_overlap_and_nodata_leave_no_reference(shared_data, tmp_path):
    files = naip_files(shared_data)
    inp = write_window(files[0], tmp_path / "input.tif", Window(100, 100, 256, 256))
    # the reference covers the input's left half only, and has a nodata hole
    ref = write_window(files[2], tmp_path / "ref.tif", Window(0, 0, 228, 500))
    with rasterio.open(ref, "r+") as dst:
        dst.nodata = 0
        data = dst.read()
        data[:, 150:230, 140:200] = 0
        dst.write(data)
    warnings: list[str] = []
    reference = raster_reference(ref, grid_of(inp), SCALE, warn=warnings.append)
    valid = reference.coarse[2].numpy()
    assert valid[:, 17:].max() == 0  # right of the reference's edge (column 128 of the input)
    assert valid[:5, :14].min() == 1
    assert valid[7:15, 6:12].max() == 0  # the hole: rows 50-130, columns 40-100 of the input
    assert reference.coarse[:2, 7:15, 6:12].abs().max() == 0
    assert len(warnings) == 1 and "covers" in warnings[0] and "without it" in warnings[0]


def test_tiles_see_the_same_planes_as_the_whole_input():
    coarse = torch.rand(3, 9, 11)
    ref = Reference(SCALE, coarse=coarse)
    whole = ref.window(0, 0, 70, 85)
    for top, left, h, w in ((0, 0, 30, 40), (17, 33, 41, 29), (40, 60, 30, 25)):
        assert torch.allclose(ref.window(top, left, h, w), whole[..., top:top + h, left:left + w], atol=1e-6)


def test_reference_from_the_wmts_server(wmts, shared_data, tmp_path):  # noqa: F811 (fixture)
    inp = write_window(shared_data / TOWN, tmp_path / "town.tif", Window(60, 40, 384, 320))
    spec = ReferenceSpec(service=wmts["url"], layer="town", zoom="2", cache=tmp_path / "cache", progress=False)
    reference = spec.for_grid(grid_of(inp), SCALE)
    assert reference.covered == 1.0
    own = truth_planes(inp)
    assert float((reference.coarse[:2] - own[:2]).abs().mean()) < 0.01
    assert list((tmp_path / "cache" / "town").glob("mosaic_*.tif"))
    # cached: a second run fetches nothing and gives the same planes
    again = spec.for_grid(grid_of(inp), SCALE)
    assert torch.equal(again.coarse, reference.coarse)


def test_widened_model_starts_as_the_plain_model(tiny_checkpoint):
    """A model trained without references, given reference input planes with zero weights (as
    warm starting does), colorizes exactly as before: without a reference, with one, and at
    strength 0."""
    plain, cfg = load_method(tiny_checkpoint)
    cfg_ref = cfg.model_copy(deep=True)
    cfg_ref.model.reference.enabled = True
    method = get_method("pix2pix")(cfg_ref.model, training=False)
    warm_start(method, tiny_checkpoint)
    gray = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    reference = Reference(SCALE, coarse=torch.rand(3, 12, 10))
    before = torch_colorizer(plain, cfg).colorize(gray, tile=64, overlap=16)
    colorizer = torch_colorizer(method, cfg_ref)
    # to rounding: folded, channels_last convolutions with more input planes use other kernels
    assert np.abs(colorizer.colorize(gray, tile=64, overlap=16) - before).max() < 1e-6
    assert np.abs(colorizer.colorize(gray, tile=64, overlap=16, reference=reference) - before).max() < 1e-6


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny reference model (scene context, batch norm) with non-zero weights on
    the reference planes."""
    cfg = load_config(None, REF_TINY)
    torch.manual_seed(0)
    method = get_method("pix2pix")(cfg.model, training=False)
    with torch.no_grad():  # strong colours, strongly tied to the reference planes
        method.netG[1].weight[:, 1:].normal_(0, 0.5)
        method.netG[-2].weight.mul_(100)
    path = tmp_path_factory.mktemp("ref_model") / "ref.pt"
    save_checkpoint(path, {"config": cfg.model_dump(), "nets": method.nets_state(("netG",))})
    return path


def test_reference_changes_the_colours_and_strength_mixes(reference_checkpoint):
    colorizer = torch_colorizer(*load_method(reference_checkpoint))
    gray = np.random.default_rng(1).random((64, 72)).astype(np.float32)
    reference = Reference(SCALE, coarse=torch.rand(3, 8, 9))
    plain = colorizer.colorize(gray, tile=64, overlap=16)
    full = colorizer.colorize(gray, tile=64, overlap=16, reference=reference)
    assert np.abs(full - plain).max() > 0.05
    reference.strength = 0.0
    assert np.array_equal(colorizer.colorize(gray, tile=64, overlap=16, reference=reference), plain)


def test_onnx_parity_with_a_reference(reference_checkpoint, tmp_path):
    from aerocolor.infer import load_colorizer

    torch_c = load_colorizer(reference_checkpoint, "cpu", "torch")
    onnx_c = load_colorizer(reference_checkpoint, "cpu", "onnx")
    assert onnx_c.generator.reference_channels == 4
    gray = np.random.default_rng(2).random((96, 100)).astype(np.float32)
    for reference in (Reference(SCALE, coarse=torch.rand(3, 12, 13)),
                      Reference(SCALE, palette=torch.tensor([0.1, -0.2])), None):
        a = torch_c.colorize(gray, tile=64, overlap=16, reference=reference)
        b = onnx_c.colorize(gray, tile=64, overlap=16, reference=reference)
        assert np.abs(a - b).max() < 2e-3


def test_bad_references_are_one_line(shared_data, tmp_path, reference_checkpoint, tiny_checkpoint, capsys):
    files = naip_files(shared_data)
    inp = write_window(files[0], tmp_path / "input.tif", Window(0, 0, 128, 128))
    far = write_window(files[1], tmp_path / "far.tif", Window(700, 500, 200, 200))
    gray_ref = write_window(files[1], tmp_path / "gray.tif", Window(0, 0, 128, 128), gray=True)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\0 not really a tiff")
    cases = [
        (far, "does not overlap the input at all"),
        (gray_ref, "gray"),
        (broken, "not a readable reference raster"),
        (tmp_path / "missing.tif", "no such reference file"),
    ]
    common = ["-o", str(tmp_path / "out"), "--device", "cpu"]
    for ref, message in cases:
        code, err = run_main(["colorize", str(inp), "-m", str(reference_checkpoint), "--reference", str(ref),
                              *common], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], err
    code, err = run_main(["colorize", str(inp), "-m", str(tiny_checkpoint), "--reference", str(far), *common],
                         capsys)
    assert code == 2 and "takes no colour reference" in err
    code, err = run_main(["colorize", str(inp), "-m", str(reference_checkpoint), "--reference", str(far),
                          "--reference-strength", "1.5", *common], capsys)
    assert code == 2 and "--reference-strength 1.5" in err


def test_cli_georeferenced_and_palette_references(shared_data, tmp_path, reference_checkpoint):
    files = naip_files(shared_data)
    inp = write_window(files[0], tmp_path / "input.tif", Window(0, 0, 160, 128), gray=True)
    ref = reprojected(files[3], tmp_path / "ref.tif", "EPSG:3857", 9.0)
    out = tmp_path / "out"
    r = run_cli("colorize", str(inp), "-m", str(reference_checkpoint), "--reference", str(ref),
                "-o", str(out), "--device", "cpu", "--tile", "64", "--overlap", "16")
    assert r.exit_code == 0, r.output
    with rasterio.open(out / "input_color.tif") as src, rasterio.open(inp) as gray:
        assert src.count == 3 and src.crs == gray.crs and src.transform == gray.transform
    # a scan without georeference takes the palette, and says so
    scan = shared_data / "color/val/aid"
    image = sorted(scan.glob("*.jpg"))[0]
    r = run_cli("colorize", str(image), "-m", str(reference_checkpoint), "--reference", str(ref),
                "-o", str(out), "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "palette" in r.output and (out / f"{image.stem}_color.png").is_file()


def test_training_references_are_made_from_the_truth():
    cfg = ReferenceConfig(enabled=True, drop_probability=0.3, palette_probability=0.3)
    rgb = torch.rand(64, 3, 32, 32)
    torch.manual_seed(0)
    planes = simulate_references(rgb, None, cfg, None)
    assert planes.shape == (64, 4, 32, 32)
    dropped = planes.flatten(1).abs().amax(1) == 0
    palette = planes[:, 3].amax(dim=(1, 2)) == 1
    local = ~dropped & ~palette
    assert 5 <= int(dropped.sum()) <= 35 and 5 <= int(palette.sum()) <= 35 and int(local.sum()) >= 10
    flat = planes[palette, :2].flatten(2)
    assert torch.equal(flat.amax(2), flat.amin(2))  # one colour over the whole crop
    assert float(planes[local, 2].amax()) == 1.0 and planes[local, 3].abs().max() == 0
    assert float(planes[:, :2].abs().max()) < 1.0


def test_web_api_takes_a_reference(shared_data, tmp_path, reference_checkpoint, tiny_checkpoint):
    import httpx
    from servers import fetch_image, wait_done

    from aerocolor.web.launch import served

    models = tmp_path / "models"
    models.mkdir()
    (models / "ref.pt").symlink_to(reference_checkpoint)
    (models / "tiny.pt").symlink_to(tiny_checkpoint)
    files = naip_files(shared_data)
    inp = write_window(files[0], tmp_path / "input.tif", Window(0, 0, 96, 80), gray=True)
    ref = write_window(files[3], tmp_path / "ref.tif", Window(0, 0, 200, 200))
    far = write_window(files[3], tmp_path / "far.tif", Window(600, 500, 100, 100))

    def post(url: str, reference: Path | None, **form) -> httpx.Response:
        files = {"image": ("old.tif", inp.read_bytes())}
        if reference is not None:
            files["reference"] = (reference.name, reference.read_bytes())
        return httpx.post(f"{url}/api/jobs", files=files, data=form, timeout=60)

    with served(["--models", str(models), "--device", "cpu"], tmp_path / "server.log") as url:
        listed = {m["id"]: m["reference"] for m in httpx.get(f"{url}/api/models").json()}
        assert listed["ref.pt"] is True and listed["tiny.pt"] is False
        plain = wait_done(url, post(url, None, model="ref.pt").json()["id"])
        job = post(url, ref, model="ref.pt")
        assert job.status_code == 202 and job.json()["reference_strength"] == 1.0
        done = wait_done(url, job.json()["id"])
        coloured = fetch_image(url + done["results"][0]["png"])
        assert np.abs(coloured - fetch_image(url + plain["results"][0]["png"])).max() > 0.05
        refused = post(url, far, model="ref.pt")
        assert refused.status_code == 422 and "does not overlap" in refused.json()["detail"]
        wrong = post(url, ref, model="tiny.pt")
        assert wrong.status_code == 422 and "takes no colour reference" in wrong.json()["detail"]
        strength = post(url, ref, model="ref.pt", reference_strength="2")
        assert strength.status_code == 422 and "between 0 and 1" in strength.json()["detail"]


def test_training_with_references_runs_and_resumes(shared_data, tmp_path):
    from conftest import tiny_overrides

    from aerocolor.train import train

    out = tmp_path / "run"
    sets = tiny_overrides(out, 4, **{"model.color_mode": "lab", "model.reference.enabled": "true",
                                     "data.train": f"[{shared_data / 'color/train/neon'}]",
                                     "optim.batch_size": 4, "train.save_every": 2})
    train(load_config(None, sets), progress=False, until_step=2)
    train(load_config(None, sets), progress=False)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["config"]["model"]["reference"]["enabled"] is True
    colorizer = torch_colorizer(*load_method(out / "last.pt"))
    gray = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    out_img = colorizer.colorize(gray, reference=Reference(SCALE, palette=torch.tensor([0.2, 0.3])))
    assert out_img.shape == (64, 64, 3)


def test_reference_needs_a_method_that_takes_one():
    from aerocolor.errors import ConfigError

    cfg = load_config(None, ["model.method=cyclegan", "model.reference.enabled=true"])
    with pytest.raises(ConfigError, match="takes no colour reference; choose pix2pix"):
        get_method("cyclegan")(cfg.model)
