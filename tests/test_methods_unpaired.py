"""CycleGAN, CUT, FastCUT, BicycleGAN and the hybrid: losses, latent codes, training, resume and colorize."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from aerocolor.config import load_config
from aerocolor.losses import patch_nce
from aerocolor.methods import get_method
from aerocolor.nets.generators import UNetGenerator
from aerocolor.train import build_dataset, train

TINY = {
    "cyclegan": {},
    "cyclegan_lab": {"model.method": "cyclegan", "model.color_mode": "lab",
                     "model.options.pool_size": 4},
    "cut": {"model.nets.netG": "resnet_9blocks", "model.options.num_patches": 64},
    "fastcut": {"model.nets.netG": "resnet_9blocks", "model.options.num_patches": 64},
    "bicyclegan": {"model.options.nef": 8, "model.options.encoder_blocks": 4},
    "hybrid": {"model.color_mode": "lab", "data.balance": "source_class"},
}
# the terms that must fall when a method trains on one fixed batch
FALLING = {"cyclegan": ["cycle_A", "cycle_B"], "cyclegan_lab": ["cycle_B"], "cut": ["NCE"],
           "fastcut": ["NCE"], "bicyclegan": ["G_L1"], "hybrid": ["G_L1", "G_stats"]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread per test process: on a shared 2-core machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(shared: Path, name: str, out: Path, steps: int = 50, **extra):
    """A tiny config of method preset ``name`` on the real imagery (A: 1960s photos, B: colour)."""
    sets = {"model.method": name, "model.nets.norm": "instance", "model.nets.dropout": False,
            "data.train": f"[{shared / 'color/train'}]",
            "data.train_a": f"[{shared / 'old/train/gsi1960s'}]", **TINY[name], **extra}
    return load_config(None, tiny_overrides(out, steps, **sets))


def built(cfg, seed: int = 0):
    torch.manual_seed(seed)
    cls = get_method(cfg.model.method)
    method = cls(cfg.model)
    method.configure_optimizers(cfg.optim)
    return method, build_dataset(cfg, cls)


def fixed_batch(dataset, index: int = 5) -> dict[str, torch.Tensor]:
    return {k: v[None] for k, v in dataset[(0, index)].items()}


def test_unpaired_samples_are_one_channel_a_and_colour_b_and_repeatable(shared_data):
    from aerocolor.data.unpaired import UnpairedDataset

    old, neon = shared_data / "old/train/gsi1960s", shared_data / "color/train/neon"
    ds = UnpairedDataset([str(old)], [str(neon)], 64, seed=3)
    assert len(ds) == max(len(list(old.glob("*.png"))), len(list(neon.glob("*.jpg"))))
    first, same, next_epoch = ds[(0, 7)], ds[(0, 7)], ds[(1, 7)]
    assert first["gray"].shape == first["mask"].shape == first["b_gray"].shape == (1, 64, 64)
    assert first["b_rgb"].shape == (3, 64, 64)
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert not torch.equal(first["b_rgb"], next_epoch["b_rgb"])


def test_patch_nce_is_infonce_over_patches():
    gen = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(2, 5, 4, generator=gen), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 5, 4, generator=gen), dim=-1)
    t = 0.07
    expected = torch.empty(2, 5)
    for n in range(2):
        for i in range(5):
            scores = [math.exp(float(q[n, i] @ k[n, j]) / t) for j in range(5)]
            expected[n, i] = -math.log(scores[i] / sum(scores))
    torch.testing.assert_close(patch_nce(q, k, t), expected, rtol=1e-5, atol=1e-5)
    # queries equal to their keys cost less than unrelated ones
    assert patch_nce(k, k, t).mean() < expected.mean()


@pytest.mark.parametrize("name, flag, terms", [
    ("cyclegan", "model.options.lambda_identity=0", {"idt_G", "idt_F"}),
    ("cut", "model.options.nce_idt=false", {"NCE_Y"}),
])
def test_turning_identity_off_removes_exactly_its_terms(shared_data, tmp_path, name, flag, terms):
    with_cfg = tiny_config(shared_data, name, tmp_path)
    key, value = flag.split("=")
    without_cfg = tiny_config(shared_data, name, tmp_path, **{key: value})
    with_idt, dataset = built(with_cfg)
    without_idt, _ = built(without_cfg)
    batch = fixed_batch(dataset)
    a, b = (torch.manual_seed(1) and m.train_step(batch) for m in (with_idt, without_idt))
    assert set(a) - set(b) == terms and set(b) <= set(a)
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("inject", ["input", "all", "middle"])
def test_latent_code_changes_output_at_its_injection_point(inject):
    torch.manual_seed(0)
    plain = UNetGenerator(1, 3, depth=5, ngf=8, norm="instance", dropout=False)
    net = UNetGenerator(1, 3, depth=5, ngf=8, norm="instance", dropout=False, nz=4, inject=inject)
    down_extra = [blk[-1 if i == 0 else 1].in_channels - pblk[-1 if i == 0 else 1].in_channels
                  for i, (blk, pblk) in enumerate(zip(net.down, plain.down, strict=True))]
    up_extra = net.up[-1][1].in_channels - plain.up[-1][1].in_channels
    expected = {"input": ([4, 0, 0, 0, 0], 0), "all": ([4] * 5, 0), "middle": ([0] * 5, 4)}
    assert (down_extra, up_extra) == expected[inject]

    levels: list[torch.Tensor] = []
    hooks = [blk.register_forward_hook(lambda m, i, o: levels.append(o.clone())) for blk in net.down]
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        out1 = net(x, torch.randn(1, 4))
        out2 = net(x, torch.randn(1, 4))
    for h in hooks:
        h.remove()
    assert (out1 - out2).abs().max() > 1e-4
    encoder_same = all(torch.equal(u, v) for u, v in zip(levels[:5], levels[5:], strict=True))
    assert encoder_same == (inject == "middle")


@pytest.mark.parametrize("name", list(TINY))
def test_terms_fall_on_a_fixed_batch(shared_data, tmp_path, name):
    method, dataset = built(tiny_config(shared_data, name, tmp_path, **{"optim.lr_G": 0.001}))
    batch = fixed_batch(dataset)
    history = [method.train_step(batch) for _ in range(20)]
    for term in FALLING[name]:
        first = np.mean([float(h[term]) for h in history[:3]])
        last = np.mean([float(h[term]) for h in history[-3:]])
        assert last < 0.9 * first, (term, first, last)


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """Each preset trained 50 seeded steps on the real imagery, by name."""
    runs = {}
    for name in TINY:
        out = tmp_path_factory.mktemp(name)
        train(tiny_config(shared_data, name, out), progress=False)
        runs[name] = out
    return runs


@pytest.mark.parametrize("name", list(TINY))
def test_training_keeps_losses_finite_and_colorize_reads_the_checkpoint(
        trained, shared_data, tmp_path, name):
    from typer.testing import CliRunner

    from aerocolor.cli import app
    from aerocolor.imageio import read_image

    rows = list(csv.DictReader((trained[name] / "losses.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50]
    assert all(math.isfinite(float(v)) for r in rows for v in r.values())
    photo = sorted((shared_data / "old/val/gsi1960s").glob("*.png"))[0]
    res = CliRunner().invoke(app, ["colorize", str(trained[name] / "last.pt"), str(photo),
                                   "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    colour = read_image(tmp_path / f"{photo.stem}_color.png")
    assert colour.shape == read_image(photo).shape + (3,)


def test_cyclegan_resume_with_image_pool_is_exact(trained, shared_data, tmp_path):
    cfg = tiny_config(shared_data, "cyclegan_lab", tmp_path)
    train(cfg, until_step=27, progress=False)
    train(cfg, progress=False)
    straight = torch.load(trained["cyclegan_lab"] / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "last.pt", weights_only=True)
    assert len(resumed["extra"]["pool_B"]) == 4
    for net, state in straight["nets"].items():
        for k, v in state.items():
            assert torch.equal(v, resumed["nets"][net][k]), (net, k)


def test_cut_refuses_lab_and_layers_beyond_the_generator(shared_data, tmp_path):
    from aerocolor.errors import ConfigError

    with pytest.raises(ConfigError, match="color_mode=rgb"):
        built(tiny_config(shared_data, "cut", tmp_path, **{"model.color_mode": "lab"}))
    with pytest.raises(ConfigError, match="encoder layers 0..6"):
        built(tiny_config(shared_data, "cut", tmp_path, **{"model.nets.netG": "unet"}))


def test_bicyclegan_colorize_writes_k_samples_and_follows_a_style(trained, shared_data, tmp_path):
    from typer.testing import CliRunner

    from aerocolor.cli import app
    from aerocolor.errors import AerocolorError
    from aerocolor.imageio import read_image

    photo = str(sorted((shared_data / "old/val/gsi1960s").glob("*.png"))[1])
    ckpt = str(trained["bicyclegan"] / "last.pt")
    run = CliRunner().invoke
    res = run(app, ["colorize", ckpt, photo, "-o", str(tmp_path / "k"), "--samples", "3", "--compare"])
    assert res.exit_code == 0, res.output
    samples = [read_image(p) for p in sorted((tmp_path / "k").glob("*_color_*.png"))]
    assert len(samples) == 3
    assert all(np.abs(a - b).max() > 0 for i, a in enumerate(samples) for b in samples[i + 1:])
    # the same seed gives the same codes
    assert run(app, ["colorize", ckpt, photo, "-o", str(tmp_path / "again"), "--samples", "3"]).exit_code == 0
    again = [read_image(p) for p in sorted((tmp_path / "again").glob("*_color_*.png"))]
    assert all(np.array_equal(a, b) for a, b in zip(samples, again, strict=True))

    styles = []
    for ref in sorted((shared_data / "color/val/aid").glob("*.jpg"))[:2]:
        out = tmp_path / ref.stem
        res = run(app, ["colorize", ckpt, photo, "-o", str(out), "--style", str(ref)])
        assert res.exit_code == 0, res.output
        styles.append(read_image(next(out.glob("*_color.png"))))
    assert np.abs(styles[0] - styles[1]).max() > 0

    # a georeferenced raster gets one georeferenced output per code
    tif = Path(__file__).resolve().parents[1] / "src/aerocolor/samples/neon_osbs_029_gray.tif"
    res = run(app, ["colorize", ckpt, str(tif), "-o", str(tmp_path / "geo"), "--samples", "2"])
    assert res.exit_code == 0, res.output
    geo = [read_image(p) for p in sorted((tmp_path / "geo").glob("*_color_*.tif"))]
    assert len(geo) == 2 and np.abs(geo[0] - geo[1]).max() > 0

    res = run(app, ["colorize", str(trained["cyclegan"] / "last.pt"), photo, "-o", str(tmp_path), "--samples", "2"])
    assert isinstance(res.exception, AerocolorError) and "BicycleGAN" in str(res.exception)
