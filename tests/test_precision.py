"""Reduced precision (bfloat16 autocast): the same colours as float32 within its rounding; the
default on a GPU and on a CPU that computes bfloat16 natively (inference and training), float32
elsewhere."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from aerocolor.colorize import to_gray
from aerocolor.config import load_config
from aerocolor.errors import CheckpointError
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.loading import torch_colorizer
from aerocolor.infer.torch_backend import TorchGenerator, default_precision, load_method
from aerocolor.methods import get_method
from aerocolor.metrics import mean_ciede2000
from aerocolor.runtime import cpu_bf16
from aerocolor.train import training_autocast


@pytest.fixture(scope="module")
def bundled():
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    return load_method(default_model_path())


def test_bfloat16_colours_match_float32_within_rounding(bundled, shared_data: Path):
    gray = to_gray(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[1]))[:256, :384]
    full = torch_colorizer(*bundled, "cpu", precision="float32")
    half = torch_colorizer(*bundled, "cpu", precision="bfloat16")
    assert full.generator.precision == "float32" and half.generator.precision == "bfloat16"
    # tiled, so the statistics pass and the shared statistics run in bfloat16 too
    a, b = (c.colorize(gray, tile=192, overlap=32) for c in (full, half))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() > 1e-4, "bfloat16 was not used: the outputs are identical"
    de = mean_ciede2000(b, a)
    assert de < 0.1, f"bfloat16 changes the colours by mean CIEDE2000 {de:.3f}"


def test_precision_defaults_and_unknown_precision(bundled, cpu_bf16_as):
    for native in (False, True):
        cpu_bf16_as(native)
        assert cpu_bf16() is native
        assert default_precision(torch.device("cpu")) == ("bfloat16" if native else "float32")
        assert default_precision(torch.device("cuda")) == "bfloat16"
        assert TorchGenerator(bundled[0], torch.device("cpu")).precision == default_precision(torch.device("cpu"))
    with pytest.raises(CheckpointError, match="unknown precision 'float8'"):
        TorchGenerator(bundled[0], torch.device("cpu"), precision="float8")


def test_load_colorizer_takes_a_precision():
    # an explicit precision runs torch, also where --backend auto might have picked onnxruntime
    for backend in ("torch", "auto"):
        colorizer = load_colorizer(None, "cpu", backend, precision="bfloat16")
        assert colorizer.backend == "torch" and colorizer.generator.precision == "bfloat16"
    assert load_colorizer(None, "cpu", "torch").generator.precision == default_precision(torch.device("cpu"))
    assert load_colorizer(None, "cpu", "torch", precision="float32").generator.precision == "float32"


def test_bf16_detection_reads_the_cpu_flags(cpu_bf16_as):
    try:
        flags = next((line.split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs an x86 Linux CPU with /proc/cpuinfo flags")
    cpu_bf16_as(None)
    assert cpu_bf16() is any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def test_training_autocast_follows_the_cpu(cpu_bf16_as, shared_data: Path):
    cpu = torch.device("cpu")
    cpu_bf16_as(False)
    assert training_autocast(cpu, True) is None and training_autocast(cpu, False) is None
    assert training_autocast(torch.device("cuda"), True) is not None
    cpu_bf16_as(True)
    assert training_autocast(cpu, False) is None
    autocast = training_autocast(cpu, True)
    assert autocast is not None
    # a real pix2pix step under it: the generator's convolutions run in bfloat16, the losses are finite
    cfg = load_config(None, ["model.nets.netG=unet_64", "model.nets.ngf=8", "model.nets.ndf=8",
                             "model.color_mode=lab", "optim.batch_size=2"])
    torch.manual_seed(0)
    method = get_method("pix2pix")(cfg.model)
    method.configure_optimizers(cfg.optim)
    method.train()
    method.amp = autocast
    dtypes = []
    first = next(m for m in method.netG.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    rgb = torch.from_numpy(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[0])[:128, :128]
                           .astype(np.float32) / 255).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    batch = {"rgb": rgb, "gray": rgb.mean(1, keepdim=True), "mask": torch.ones(2, 1, 128, 128),
             "scene": torch.full((2,), -1)}
    losses = method.train_step(batch)
    assert dtypes == [torch.bfloat16]
    assert all(torch.isfinite(v).all() for v in losses.values()), losses


def test_cli_raster_on_a_bf16_cpu_runs_bf16_and_matches_float32(cpu_bf16_as, shared_data: Path, tmp_path):
    """The path a user on a CPU with native bfloat16 gets by default: ``colorize`` of a GeoTIFF,
    streamed in tiles, auto precision. Same georeference, colours within bfloat16's rounding."""
    import rasterio
    from cli_helpers import run_cli
    from rasterio.transform import from_origin

    gray = (to_gray(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[2]))[:320, :448] * 255)
    src = tmp_path / "scan.tif"
    profile = {"driver": "GTiff", "width": 448, "height": 320, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32617", "transform": from_origin(403000.0, 3285000.0, 0.5, 0.5)}
    with rasterio.open(src, "w", **profile) as dst:
        dst.write(gray.round().astype(np.uint8)[None])
    outputs = {}
    runs = (("bf16", True, []), ("fp32", False, []), ("fp32-forced", True, ["--precision", "float32"]))
    for name, native, extra in runs:
        cpu_bf16_as(native)
        out = tmp_path / name
        result = run_cli("colorize", src, "-o", out, "--backend", "torch", "--tile", 256, "--overlap", 32, "-q",
                         *extra)
        assert result.exit_code == 0, result.output
        with rasterio.open(next(out.glob("*.tif"))) as ds:
            assert ds.crs == profile["crs"] and ds.transform == profile["transform"] and ds.count == 3
            outputs[name] = ds.read().transpose(1, 2, 0).astype(np.float32) / 255
    assert np.array_equal(outputs["fp32"], outputs["fp32-forced"]), "--precision float32 did not run float32"
    assert np.abs(outputs["bf16"] - outputs["fp32"]).max() > 0, "bfloat16 was not used: the outputs are identical"
    de = mean_ciede2000(outputs["bf16"], outputs["fp32"])
    assert de < 0.15, f"bfloat16 changes the raster's colours by mean CIEDE2000 {de:.3f}"
