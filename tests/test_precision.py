"""The GPU's reduced precision (bfloat16 autocast), run here on the CPU: the same colours within
its rounding, float32 everywhere it is not asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aerocolor.colorize import to_gray
from aerocolor.errors import CheckpointError
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.loading import torch_colorizer
from aerocolor.infer.torch_backend import TorchGenerator, default_precision, load_method
from aerocolor.metrics import mean_ciede2000


@pytest.fixture(scope="module")
def bundled():
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    return load_method(default_model_path())


def test_bfloat16_colours_match_float32_within_rounding(bundled, shared_data: Path):
    gray = to_gray(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[1]))[:256, :384]
    full = torch_colorizer(*bundled, "cpu")
    half = torch_colorizer(*bundled, "cpu", precision="bfloat16")
    assert full.generator.precision == "float32" and half.generator.precision == "bfloat16"
    # tiled, so the statistics pass and the shared statistics run in bfloat16 too
    a, b = (c.colorize(gray, tile=192, overlap=32) for c in (full, half))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() > 1e-4, "bfloat16 was not used: the outputs are identical"
    de = mean_ciede2000(b, a)
    assert de < 0.1, f"bfloat16 changes the colours by mean CIEDE2000 {de:.3f}"


def test_precision_defaults_and_unknown_precision(bundled):
    assert default_precision(torch.device("cpu")) == "float32"
    assert default_precision(torch.device("cuda")) == "bfloat16"
    with pytest.raises(CheckpointError, match="unknown precision 'float8'"):
        TorchGenerator(bundled[0], torch.device("cpu"), precision="float8")


def test_load_colorizer_takes_a_precision():
    # an explicit precision runs torch, also where --backend auto might have picked onnxruntime
    for backend in ("torch", "auto"):
        colorizer = load_colorizer(None, "cpu", backend, precision="bfloat16")
        assert colorizer.backend == "torch" and colorizer.generator.precision == "bfloat16"
    assert load_colorizer(None, "cpu", "torch").generator.precision == "float32"
