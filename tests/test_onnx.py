"""ONNX export of every registered method's generator, run with onnxruntime on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from aerocolor.checkpoint import save_checkpoint
from aerocolor.cli import app
from aerocolor.color import net_input
from aerocolor.colorize import to_gray
from aerocolor.config import load_config
from aerocolor.errors import ConfigError
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer, torch_colorizer
from aerocolor.infer.onnx import OnnxGenerator, export_onnx
from aerocolor.infer.torch_backend import TorchGenerator
from aerocolor.methods import METHODS
from aerocolor.nets.generators import SceneContext
from aerocolor.nets.layers import StatsScope, stats_scope

TINY = ["model.nets.ngf=8", "model.nets.ndf=8", "model.nets.netG=unet", "model.nets.unet_depth=4"]


def build(name: str, *sets: str):
    """A method with tiny networks in the first colour mode it supports (random weights)."""
    for mode in ("lab", "rgb"):
        cfg = load_config(None, [f"model.method={name}", f"model.color_mode={mode}", *TINY, *sets])
        try:
            return METHODS[name](cfg.model, training=False).eval(), cfg
        except ConfigError:
            continue
    raise AssertionError(f"{name} builds in no colour mode")


@pytest.fixture(scope="module")
def real_gray(shared_data: Path) -> np.ndarray:
    """A real aerial photo (New York maps set), as gray, 600 x 600."""
    return to_gray(read_image(sorted((shared_data / "color/val/maps").glob("*.jpg"))[0]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_exports_and_matches_torch(name, real_gray):
    torch.manual_seed(0)
    method, cfg = build(name, "model.nets.norm=instance")
    model = onnx.load_from_string(export_onnx(method, cfg, tile=256, overlap=32))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["color_mode"] == method.mode and meta["tile"] == "256"
    assert meta["multimodal"] == str(int(method.multimodal))
    assert json.loads(meta["config"])["model"]["method"] == name
    assert [i.name for i in model.graph.input] == (["gray"] + (["z"] if method.multimodal else [])
                                                    + ["norm_stats", "norm_weights"])
    ort_gen = OnnxGenerator(model.SerializeToString(), torch.device("cpu"), name)
    torch_gen = TorchGenerator(method, torch.device("cpu"))
    for h, w in ((96, 128), (160, 64)):  # dynamic height and width
        gray = torch.from_numpy(real_gray[:h, 100:100 + w].copy())[None, None].repeat(2, 1, 1, 1)
        z = torch.randn(2, ort_gen.z_dim) if method.multimodal else None
        with torch.no_grad():
            expected = torch_gen(gray, z)
        got = ort_gen(gray, z)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-4
    if method.multimodal:  # the latent code reaches the exported graph
        assert (ort_gen(gray, z) - ort_gen(gray, -z)).abs().max() > 1e-3


def test_rgb_output_does_the_lab_recombination(real_gray):
    import onnxruntime as ort

    torch.manual_seed(0)  # random weights: fixed, so the test does not depend on the tests before it
    method, cfg = build("pix2pix")
    session = ort.InferenceSession(export_onnx(method, cfg))
    gray = real_gray[None, None, :128, :192].copy()
    rgb = session.run(["rgb"], {"gray": gray})[0][0].transpose(1, 2, 0)
    expected = torch_colorizer(method, cfg).colorize(gray[0, 0], tile=1024)
    assert np.abs(rgb - expected).max() < 1e-4
    # L* of the input is kept wherever the colour is inside the sRGB gamut (clipping a channel of
    # an out-of-gamut colour, which random weights produce, changes its lightness)
    in_gamut = ((rgb > 0) & (rgb < 1)).all(axis=2)
    assert in_gamut.mean() > 0.5
    assert np.abs(to_gray(rgb) - gray[0, 0])[in_gamut].max() < 2e-3


def save_untrained(path: Path, name: str, *sets: str) -> Path:
    method, cfg = build(name, *sets)
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"),
                           "nets": method.nets_state(method.inference_nets)})
    return path


def colour_by_backend(model: Path, gray: np.ndarray, backend: str, tile: int) -> np.ndarray:
    return load_colorizer(model, "cpu", backend).colorize(gray, tile=tile, overlap=64)


def test_cli_export_and_onnx_backend_match_torch(real_gray, tmp_path):
    ckpt = save_untrained(tmp_path / "p2p.pt", "pix2pix", "model.nets.norm=batch")
    out = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--onnx", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    onnx_colorizer = load_colorizer(out, "cpu")
    assert onnx_colorizer.config == load_colorizer(ckpt, "cpu").config  # config inside the file
    gray = real_gray[:448, :448]
    for tile in (1024, 256):  # whole, then tiled and blended
        diff = np.abs(colour_by_backend(out, gray, "onnx", tile)
                      - colour_by_backend(ckpt, gray, "torch", tile))
        assert diff.max() < 1e-3, f"tile {tile}: max abs difference {diff.max():.2g}"


@pytest.mark.parametrize("name", ["cyclegan", "bicyclegan"])
def test_onnx_backend_matches_torch_for_instance_norm_whole_and_tiled(name, real_gray, tmp_path):
    """Tiles share instance-norm statistics gathered across the input, through the graph's
    statistics inputs, exactly as the torch backend shares them."""
    ckpt = save_untrained(tmp_path / "inst.pt", name, "model.nets.norm=instance")
    gray = real_gray[:448, :576]
    for tile in (1024, 256):
        torch_out = colour_by_backend(ckpt, gray, "torch", tile)
        diff = np.abs(colour_by_backend(ckpt, gray, "onnx", tile) - torch_out)
        assert diff.max() < 1e-3, f"tile {tile}: max abs difference {diff.max():.2g}"
    # the tiles really are normalised with shared statistics: their own would change the colours
    colorizer = load_colorizer(ckpt, "cpu", "onnx")
    tiles = torch.from_numpy(np.stack([gray[:256, :256], gray[192:448, 320:576]]))[:, None].float()
    z = torch.zeros(2, colorizer.generator.z_dim) if colorizer.multimodal else None
    stats = colorizer.generator.pooled_norm_stats(tiles, z)
    assert stats.shape == (int(colorizer.generator.meta["norm_stats_size"]),)
    own = colorizer.generator(tiles, z)
    shared = colorizer.generator(tiles, z, stats)
    assert (own - shared).abs().max() > 1e-3


def test_instance_norm_statistics_inputs_are_optional(real_gray):
    import onnxruntime as ort

    torch.manual_seed(0)
    method, cfg = build("cyclegan", "model.nets.norm=instance")
    session = ort.InferenceSession(export_onnx(method, cfg))
    assert [i.name for i in session.get_inputs()] == ["gray"]  # the only required input
    assert {i.name for i in session.get_overridable_initializers()} == {"norm_stats", "norm_weights"}
    gray = real_gray[None, None, :128, :128].copy()
    raw = session.run(["raw"], {"gray": gray})[0]  # defaults: plain per-image instance norm
    with torch.no_grad():
        expected = TorchGenerator(method, torch.device("cpu"))(torch.from_numpy(gray), None)
    assert np.abs(raw - expected.numpy()).max() < 1e-4


def test_bundled_model_onnx_matches_torch(real_gray):
    if not default_model_path().is_file():
        pytest.fail(f"the bundled model {default_model_path()} is missing from the package")
    gray = real_gray[:384, :384]
    diff = np.abs(colour_by_backend(default_model_path(), gray, "onnx", 256)
                  - colour_by_backend(default_model_path(), gray, "torch", 256))
    assert diff.max() < 1e-3


def test_onnx_backend_matches_torch_with_scene_context(real_gray, tmp_path):
    """A ResNet generator's scene context is pooled over the whole input and shared by its tiles,
    with either backend."""
    torch.manual_seed(0)
    method, cfg = build("pix2pix", "model.nets.netG=resnet_6blocks", "model.nets.context=true",
                        "model.nets.norm=batch", "model.nets.init_type=kaiming")
    for m in method.modules():  # a trained context: the identity start would hide it
        if isinstance(m, SceneContext):
            torch.nn.init.normal_(m.film[-1].weight, 0.0, 0.5)
    ckpt = tmp_path / "context.pt"
    save_checkpoint(ckpt, {"config": cfg.model_dump(mode="json"), "nets": method.nets_state(method.inference_nets)})
    gray = real_gray[:448, :576]
    for tile in (1024, 256):
        torch_out = colour_by_backend(ckpt, gray, "torch", tile)
        diff = np.abs(colour_by_backend(ckpt, gray, "onnx", tile) - torch_out)
        assert diff.max() < 1e-3, f"tile {tile}: max abs difference {diff.max():.2g}"
    whole = colour_by_backend(ckpt, gray, "torch", 1024)
    assert np.abs(torch_out - whole).mean() < 0.002  # tiles see the whole input's context (own: 0.008)
    colorizer = load_colorizer(ckpt, "cpu", "onnx")
    tiles = torch.from_numpy(np.stack([gray[:256, :256], gray[192:448, 320:576]]))[:, None].float()
    shared = colorizer.generator(tiles, None, colorizer.generator.pooled_norm_stats(tiles, None))
    assert (colorizer.generator(tiles, None) - shared).abs().max() > 1e-3  # their own context differs


@pytest.mark.parametrize("name, sets", [
    ("cyclegan", ["model.nets.norm=instance"]),
    ("bicyclegan", ["model.nets.norm=instance"]),
    ("pix2pix", ["model.nets.netG=resnet_6blocks", "model.nets.context=true", "model.nets.norm=batch"]),
])
def test_torch_statistics_pass_stops_at_the_last_norm(name, sets, real_gray):
    """The statistics pass skips the layers after the last norm, and gets the same statistics."""
    torch.manual_seed(0)
    method, _ = build(name, *sets)
    gen = TorchGenerator(method, torch.device("cpu"))
    tiles = torch.from_numpy(np.stack([real_gray[:128, :128], real_gray[200:328, 64:192]]))[:, None].float()
    z = torch.zeros(2, gen.z_dim) if gen.multimodal else None
    assert gen.norm_calls(z) > 0  # counted once, on a small input
    convs = [m for m in gen.method.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    ran: list[int] = []
    handles = [m.register_forward_hook(lambda *_: ran.append(1)) for m in convs]
    with torch.no_grad():
        with stats_scope(StatsScope(pool=True)) as scope:
            gen.method.generate(net_input(tiles, gen.mode), z)
        full = scope.pooled
        full_convs = len(ran)
        ran.clear()
        early = gen.pooled_norm_stats(tiles, z)
    for h in handles:
        h.remove()
    assert early.keys() == full.keys()
    for m, (mean, var) in full.items():
        assert torch.equal(early[m][0], mean) and torch.equal(early[m][1], var)
    assert 0 < len(ran) < full_convs, (len(ran), full_convs)


def test_sessions_hold_less_memory(real_gray):
    """Sessions share a CPU arena that grows by what is asked, plan no memory pattern per shape
    and hand free arena chunks back after each run (300 + 400 MB less at the peak on rasters);
    two of them in one process still run, and runs after a shrink give the same output."""
    from aerocolor.infer.onnx import session_options

    options = session_options()
    assert options.enable_mem_pattern is False
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    method, cfg = build("pix2pix", "model.nets.norm=batch")
    data = export_onnx(method, cfg)
    gray = torch.from_numpy(real_gray[:64, :64].copy())[None, None]
    first, second = (OnnxGenerator(data, torch.device("cpu"), "tiny") for _ in range(2))
    assert first.run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    assert torch.equal(first(gray, None), second(gray, None))
    assert torch.equal(first(gray, None), second(gray, None))  # after a shrink


@pytest.mark.parametrize("mode", ["lab", "rgb"])
def test_chroma_scales_saturation_alike_in_torch_onnx_and_the_graph_output(mode, real_gray, tmp_path):
    """``model.chroma`` multiplies the colours' a*, b* (lightness kept) in the torch colorizer, the
    ONNX colorizer and the exported graph's own rgb output alike."""
    import onnxruntime as ort

    from aerocolor.color import rgb_to_lab, to_tensor

    torch.manual_seed(0)
    method, cfg = build("pix2pix", f"model.color_mode={mode}", "model.nets.norm=batch")
    cfg.model.chroma = 1.6
    ckpt = tmp_path / "p2p.pt"
    save_checkpoint(ckpt, {"config": cfg.model_dump(mode="json"), "nets": method.nets_state(method.inference_nets)})
    gray = real_gray[:192, :256]
    plain = torch_colorizer(method, load_config(None, [f"model.color_mode={mode}"])).colorize(gray)
    strong = colour_by_backend(ckpt, gray, "torch", 1024)
    assert np.abs(colour_by_backend(ckpt, gray, "onnx", 1024) - strong).max() < 1e-3
    graph = ort.InferenceSession(export_onnx(method, cfg)).run(["rgb"], {"gray": gray[None, None].copy()})[0]
    assert np.abs(graph[0].transpose(1, 2, 0) - strong).max() < 1e-3
    lab_plain, lab_strong = (rgb_to_lab(to_tensor(x))[0].numpy() for x in (plain, strong))
    # inside the gamut (where no channel was clipped), a*, b* grow by 1.6 and L* stays
    inside = ((strong > 0.01) & (strong < 0.99)).all(2) & ((plain > 0.01) & (plain < 0.99)).all(2)
    assert inside.mean() > 0.3
    ratio = np.abs(lab_strong[1:, inside]).sum() / np.abs(lab_plain[1:, inside]).sum()
    assert abs(ratio - 1.6) < 0.05
    assert np.abs(lab_strong[0, inside] - lab_plain[0, inside]).max() < 0.5
