"""The fast inference paths give the reference path's output: batch norms folded into the
convolutions, channels_last, onnxruntime; the tiling plan; blank tiles skipped; and the measured
choice of backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from aerocolor.colorize import to_gray
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.colorizer import Colorizer, tile_plan, tile_windows
from aerocolor.infer.loading import (
    PREFERENCE_MARGIN,
    backend_cache_path,
    choose_backend,
    machine_key,
    measure_backends,
)
from aerocolor.infer.torch_backend import TorchGenerator, load_method
from aerocolor.nets.layers import fold_batch_norms

# raw outputs (ab/110 or RGB in [-1, 1]) of two float32 paths agree to this: rounding only
RAW_TOLERANCE = 1e-4
# colour in [0, 1]: a tenth of an 8-bit level
COLOUR_TOLERANCE = 0.1 / 255


@pytest.fixture(scope="module")
def real_gray(shared_data: Path) -> np.ndarray:
    """A real 600 x 600 aerial photo (color/val/maps), in gray."""
    return to_gray(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[0]))


@pytest.fixture(scope="module")
def bundled():
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    return load_method(default_model_path())


def test_folded_channels_last_generator_matches_reference(bundled, real_gray):
    method, config = bundled
    cpu = torch.device("cpu")
    reference, fast = TorchGenerator(method, cpu, fast=False), TorchGenerator(method, cpu)
    norms = [m for m in method.netG.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(isinstance(m, nn.BatchNorm2d) for m in fast.method.netG.modules())
    assert fast.method.netG is not method.netG  # the method itself keeps its norms
    assert len([m for m in method.netG.modules() if isinstance(m, nn.BatchNorm2d)]) == len(norms)
    gray = torch.from_numpy(np.ascontiguousarray(real_gray[:256, 64:384]))[None, None]
    with torch.no_grad():
        expected, got = reference(gray, None), fast(gray, None)
    assert got.is_contiguous() and got.shape == expected.shape
    assert (got - expected).abs().max() < RAW_TOLERANCE
    # the whole colorizer, tiled, with the scene context's statistics shared across tiles
    crop = real_gray[:320, :384]
    slow = Colorizer(reference, config, cpu).colorize(crop, tile=224, overlap=32)
    quick = Colorizer(fast, config, cpu).colorize(crop, tile=224, overlap=32)
    assert np.abs(slow - quick).max() < COLOUR_TOLERANCE


def test_fold_leaves_training_networks_alone(tiny_checkpoint):
    method, _ = load_method(tiny_checkpoint)
    method.train()
    TorchGenerator(method, torch.device("cpu"))
    assert method.netG.training, "an inference copy must not switch the method to eval"
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    assert fold_batch_norms(net) == 0  # training-mode norms use batch statistics: not folded
    assert fold_batch_norms(net.eval()) == 1 and isinstance(net[1], nn.Identity)


def test_onnx_matches_reference(bundled, real_gray):
    torch_one = load_colorizer(None, "cpu", "torch")
    onnx_one = load_colorizer(None, "cpu", "onnx")
    reference = Colorizer(TorchGenerator(bundled[0], torch.device("cpu"), fast=False), bundled[1],
                          torch.device("cpu"))
    crop = real_gray[:256, :320]
    expected = reference.colorize(crop, tile=192, overlap=32)  # tiled: statistics pass and blending
    for colorizer in (torch_one, onnx_one):
        got = colorizer.colorize(crop, tile=192, overlap=32)
        assert np.abs(got - expected).max() < COLOUR_TOLERANCE, colorizer.backend


def test_tile_plan_spreads_tiles_evenly():
    assert tile_plan(600, 600, 1024, 64) == ([0], [0], 600, 600)  # a photo is one tile
    assert tile_plan(600, 1500, 1024, 64) == ([0], [0], 600, 1500)  # within the pixel budget
    tops, lefts, th, tw = tile_plan(600, 600, 512, 64)  # 2 x 2 tiles of 332 px, not of 512
    assert (tops, lefts, th, tw) == ([0, 268], [0, 268], 332, 332)
    for h, w, tile, overlap, multiple in ((2048, 2048, 1024, 64, 4), (700, 1900, 256, 32, 8),
                                          (5000, 1100, 1024, 100, 4)):
        tops, lefts, th, tw = tile_plan(h, w, tile, overlap, multiple)
        assert th <= tile and tw <= tile
        for starts, side, n in ((tops, th, h), (lefts, tw, w)):
            assert starts[0] == 0 and starts[-1] + side == n
            assert all(side - (b - a) >= overlap for a, b in zip(starts, starts[1:], strict=False))
            fewer = len(starts) - 1  # one tile fewer could not cover the axis with that overlap
            assert fewer * tile - (fewer - 1) * overlap < n
        covered = np.zeros((h, w), bool)
        for t, lft, hh, ww in tile_windows(h, w, tile, overlap, multiple):
            covered[t:t + hh, lft:lft + ww] = True
        assert covered.all()


def test_blank_tiles_are_not_run(tiny_checkpoint, real_gray):
    colorizer = load_colorizer(tiny_checkpoint, "cpu")
    gray = real_gray[:480, :480]
    h, w = gray.shape
    tops, lefts, th, tw = colorizer.plan(h, w, 192, 32)
    n_tiles = len(tops) * len(lefts)
    assert len(tops) >= 2 and len(lefts) >= 2
    blank_tile = (tops[0], lefts[0])
    calls: list[int] = []
    colorizer.generator.method.netG.register_forward_pre_hook(lambda _, args: calls.append(len(args[0])))

    def read(t, lft, hh, ww):
        return gray[t:t + hh, lft:lft + ww]

    def blend(blank=None):
        calls.clear()
        rows = list(colorizer.blend_tiles(read, h, w, 192, 32, blank=blank, progress=done.append))
        return torch.cat([raw for _, _, raw in rows], dim=-2)[0], sum(calls)

    done: list[int] = []
    colorizer.generator.norm_calls(None)  # counted once, on first use: not part of what is compared
    whole, n_all = blend()
    skipped, n_some = blend(lambda t, lft, hh, ww: (t, lft) == blank_tile)
    assert n_all - n_some == 1  # (both include the statistics pass)
    assert sum(done) == 2 * n_tiles  # progress still counts every tile
    # outside the blank tile the output is the same; inside, only where no other tile reaches
    mask = np.ones((h, w), bool)
    mask[:th, :tw] = False
    assert torch.equal(skipped[:, torch.from_numpy(mask)], whole[:, torch.from_numpy(mask)])
    assert skipped[:, :tops[1], :lefts[1]].abs().max() == 0


def test_choose_backend_depends_on_measurements_only():
    assert choose_backend({"torch": 0.30, "onnx": 0.39}) == "onnx"
    assert choose_backend({"onnx": 0.39, "torch": 0.30}) == "onnx"
    assert choose_backend({"torch": 0.41, "onnx": 0.39}) == "torch"
    assert choose_backend({"onnx": 0.5, "torch": 0.5}) == "torch"  # a tie: the first of BACKENDS
    # onnx must be PREFERENCE_MARGIN times as fast: 8% faster is within a probe's noise
    assert PREFERENCE_MARGIN == pytest.approx(1.10)
    assert choose_backend({"torch": 0.391, "onnx": 0.408}) == "torch"
    assert choose_backend({"torch": 0.40, "onnx": 0.45}) == "onnx"
    assert choose_backend({"torch": 0.40, "onnx": 0.43}, margin=1.0) == "onnx"
    assert choose_backend({"onnx": 0.3}) == "onnx"
    with pytest.raises(ValueError, match="no measurement"):
        choose_backend({"tvm": 1.0})


def test_auto_backend_measures_once_and_follows_its_measurements(tiny_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_colorizer(tiny_checkpoint, "cpu", "auto")
    cache = backend_cache_path()
    assert cache.parent.parent == tmp_path
    measured = json.loads(cache.read_text())[machine_key(tiny_checkpoint)]
    assert set(measured) == {"torch", "onnx"} and all(v > 0 for v in measured.values())
    assert first.backend.startswith(choose_backend(measured) + " (auto:")
    for favoured in ("torch", "onnx"):  # the remembered measurements decide, not the moment's load
        other = "onnx" if favoured == "torch" else "torch"
        cache.write_text(json.dumps({machine_key(tiny_checkpoint): {favoured: 2.0, other: 1.0}}))
        colorizer = load_colorizer(tiny_checkpoint, "cpu", "auto")
        assert colorizer.backend.startswith(f"{favoured} (auto: ")
        assert (colorizer.method is None) == (favoured == "onnx")


def test_auto_backend_with_cpu_bfloat16_keys_and_names_the_precision(tiny_checkpoint, cpu_bf16_as,
                                                                     monkeypatch, tmp_path):
    """Where the CPU computes bfloat16 natively, torch's measurements are its bfloat16 ones: kept
    apart from float32 ones, and the choice says the precision."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cpu_bf16_as(True)
    key = machine_key(tiny_checkpoint)
    assert " bfloat16 " in key and key != machine_key(tiny_checkpoint, "float32")
    backend_cache_path().parent.mkdir(parents=True)
    backend_cache_path().write_text(json.dumps({key: {"torch": 2.0, "onnx": 1.0}}))
    colorizer = load_colorizer(tiny_checkpoint, "cpu", "auto")
    assert colorizer.generator.precision == "bfloat16"
    assert colorizer.backend.startswith("torch bfloat16 (auto: torch 2.000 MP/s, onnx 1.000 MP/s")


def test_measure_backends_times_each(tiny_checkpoint):
    speeds = measure_backends({"torch": load_colorizer(tiny_checkpoint, "cpu", "torch")}, side=64, runs=1)
    assert set(speeds) == {"torch"} and speeds["torch"] > 0


def test_auto_backend_probes_at_the_cpu_tile(tmp_path, monkeypatch):
    """Backends are timed on a tile of the size a raster is cut into on the CPU (the faster on
    small tiles need not be the faster on a raster's tiles); measurements from another probe
    size are not reused."""
    from aerocolor.checkpoint import save_checkpoint
    from aerocolor.config import load_config
    from aerocolor.infer.colorizer import CPU_CUT_TILE
    from aerocolor.methods import METHODS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cfg = load_config(None, ["model.nets.ngf=8", "model.nets.netG=unet", "model.nets.unet_depth=4",
                             "model.nets.norm=batch"])
    method = METHODS[cfg.model.method](cfg.model, training=False).eval()
    ckpt = save_checkpoint(tmp_path / "tiny.pt", {"config": cfg.model_dump(mode="json"),
                                                 "nets": method.nets_state(method.inference_nets)})
    key = machine_key(ckpt)
    assert key.endswith(f"probe {CPU_CUT_TILE} px")
    backend_cache_path().parent.mkdir(parents=True)
    older = key.removesuffix(f" probe {CPU_CUT_TILE} px")  # a cache from a probe of unrecorded size
    backend_cache_path().write_text(json.dumps({older: {"torch": 1e-9, "onnx": 1e-9}}))
    colorizer = load_colorizer(ckpt, "cpu", "auto")
    assert colorizer.backend.endswith(f"on a {CPU_CUT_TILE} px tile)")
    measured = json.loads(backend_cache_path().read_text())
    assert set(measured) == {older, key} and all(v > 1e-6 for v in measured[key].values())
