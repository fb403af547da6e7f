"""int8 models (aerocolor.infer.int8): the bundled one belongs to the bundled checkpoint, runs
through the tiled path with its statistics pass, stays close to float32 on a real image, and
`aerocolor export --int8` makes one of any ResNet checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_helpers import run_main

from aerocolor.colorize import to_gray
from aerocolor.errors import CheckpointError
from aerocolor.imageio import as_rgb, read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.int8 import SOURCE_KEY, block_convs, bundled_int8_path, file_digest, int8_model_for
from aerocolor.infer.loading import choose_backend
from aerocolor.metrics import mean_ciede2000


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def quantised_convs(model: onnx.ModelProto) -> set[str]:
    """Convolutions fed by a DequantizeLinear (QDQ): the ones that run in int8."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in dq}


def test_bundled_int8_model_belongs_to_the_bundled_checkpoint():
    assert bundled_int8_path().is_file(), "models/default_int8.onnx is missing from the package"
    assert int8_model_for(default_model_path()) == bundled_int8_path(), (
        "models/default_int8.onnx was made from another checkpoint than models/default.pt: rebuild it with "
        "python scripts/int8_quantisation.py --write src/aerocolor/models/default_int8.onnx")
    model = onnx.load(str(bundled_int8_path()))
    blocks = block_convs(model)
    assert len(blocks) == 12 and quantised_convs(model) == set(blocks)  # first, context and output layers stay float32


def test_int8_colours_stay_close_to_float32_through_the_tiled_path(shared_data: Path):
    truth = as_rgb(read_image(sorted((shared_data / "color/val/aid").glob("*.jpg"))[0]))
    gray = to_gray(truth)[:320, :448]
    full = load_colorizer(None, "cpu", "torch")
    int8 = load_colorizer(None, "cpu", "int8")
    assert int8.backend == "int8"
    a, b = (c.colorize(gray, tile=192, overlap=32) for c in (full, int8))  # 6 tiles and a statistics pass
    apart = mean_ciede2000(b, a)
    assert 0.01 < apart < 0.8, f"int8 against float32: mean CIEDE2000 {apart:.3f}"
    change = mean_ciede2000(b, truth[:320, :448]) - mean_ciede2000(a, truth[:320, :448])
    assert abs(change) < 0.3, f"int8 moved the error against the truth by {change:+.3f}"


def test_int8_backend_needs_a_checkpoint_with_an_int8_model(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="no int8 model of this checkpoint"):
        load_colorizer(tiny_checkpoint, "cpu", "int8")


def test_auto_prefers_in_order_with_a_margin():
    assert choose_backend({"torch": 0.40, "onnx": 0.41, "int8": 0.60}) == "int8"
    assert choose_backend({"torch": 0.40, "onnx": 0.50, "int8": 0.52}) == "onnx"  # int8 not 10% above onnx
    assert choose_backend({"torch": 0.40, "onnx": 0.30, "int8": 0.43}) == "torch"


def test_export_int8_of_a_checkpoint(shared_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "model_int8.onnx"
    code, err = run_main(["export", str(default_model_path()), "--onnx", str(out),
                          "--int8", str(shared_data / "color/val/neon")], capsys)
    assert code == 0, err
    meta = metadata(out)
    assert meta[SOURCE_KEY] == file_digest(default_model_path()) and meta["int8_layers"] == "blocks"
    assert meta["int8_calibration"].startswith("15 tiles")
    gray = to_gray(as_rgb(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[0])))[:256, :256]
    colour = load_colorizer(out, "cpu").colorize(gray)
    reference = load_colorizer(None, "cpu", "torch").colorize(gray)
    assert mean_ciede2000(colour, reference) < 0.8
    assert np.isfinite(colour).all()


def test_export_int8_of_a_generator_without_residual_blocks(tiny_checkpoint, shared_data: Path, tmp_path: Path,
                                                            capsys):
    code, err = run_main(["export", str(tiny_checkpoint), "--onnx", str(tmp_path / "u.onnx"),
                          "--int8", str(shared_data / "color/val/neon")], capsys)
    assert code == 2 and "no residual blocks" in err and err.count("\n") == 1
    assert not (tmp_path / "u.onnx").exists()
