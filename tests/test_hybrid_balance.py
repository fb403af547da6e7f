"""The hybrid method's adaptation terms, and sampling balanced by source and scene class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from aerocolor.config import load_config
from aerocolor.data.balance import balance_weights, scene_label, source_of
from aerocolor.data.datasets import EpochSampler
from aerocolor.errors import ConfigError
from aerocolor.losses import masked_moments, moment_match_l1
from aerocolor.methods import get_method
from aerocolor.train import build_dataset


def test_moment_matching_on_known_values():
    torch.manual_seed(0)
    ref = torch.randn(4, 2, 16, 16) * 0.2 + 0.1
    assert moment_match_l1(ref.clone(), ref) < 1e-6
    shifted = ref + torch.tensor([0.3, -0.1]).view(1, 2, 1, 1)  # a cast: the means differ
    assert abs(float(moment_match_l1(shifted, ref)) - (0.3 + 0.1) / 2) < 1e-4
    centre = ref.mean(dim=(0, 2, 3), keepdim=True)
    faint = (ref - centre) * 0.5 + centre  # washed-out colours: the spreads differ
    mean_f, std_f = masked_moments(faint)
    mean_r, std_r = masked_moments(ref)
    assert torch.allclose(mean_f, mean_r, atol=1e-5) and torch.all(std_f < 0.6 * std_r)
    assert moment_match_l1(faint, ref) > 0.04
    mask = torch.ones(4, 1, 16, 16)
    mask[:, :, :8] = 0  # masked pixels do not count, however wild
    wild = ref.clone()
    wild[:, :, :8] = 100.0
    assert moment_match_l1(wild, ref, mask, mask) < 1e-5


def test_adaptation_gradient_reaches_the_generator_only_through_old_photos(shared_data, tmp_path):
    """lambda_stats and lambda_adapt change the generator's update; with both 0 the step equals
    a pix2pix step on the colour photos (same losses)."""
    sets = {"model.method": "hybrid", "model.color_mode": "lab", "model.nets.norm": "instance",
            "data.train": f"[{shared_data / 'color/train/neon'}]",
            "data.train_a": f"[{shared_data / 'old/train/gsi1960s'}]"}
    off = load_config(None, tiny_overrides(tmp_path, 5, **sets, **{
        "model.options.lambda_adapt": 0, "model.options.lambda_stats": 0}))
    on = load_config(None, tiny_overrides(tmp_path, 5, **sets))
    grads = {}
    for name, cfg in (("off", off), ("on", on)):
        torch.manual_seed(0)
        cls = get_method("hybrid")
        method = cls(cfg.model)
        method.configure_optimizers(cfg.optim)
        batch = {k: v[None] for k, v in build_dataset(cfg, cls)[(0, 3)].items()}
        losses = method.train_step(batch)
        grads[name] = torch.cat([p.grad.flatten() for p in method.netG.parameters() if p.grad is not None])
        if name == "off":
            assert set(losses) == {"D", "G_GAN", "G_L1"}
        else:
            assert {"D_old", "G_adapt", "G_stats"} <= set(losses)
    assert (grads["on"] - grads["off"]).abs().max() > 1e-6


def test_scene_labels_and_sources_from_names(tmp_path):
    assert scene_label(Path("airport_airport_110.jpg")) == "airport"
    assert scene_label(Path("rsscn7_field_b003.jpg")) == "field"
    assert scene_label(Path("maps_train_1.jpg")) is None
    assert scene_label(Path("neon_HARV_001.jpg")) is None
    root = tmp_path / "train"
    (root / "aid").mkdir(parents=True)
    assert source_of(root / "aid" / "x.jpg", [root]) == "aid"
    assert source_of(tmp_path / "train" / "x.jpg", [root]) == "train"


def test_balanced_weights_give_each_source_and_class_an_equal_share(shared_data):
    from aerocolor.imageio import list_images

    root = shared_data / "color/train"
    files = list_images(root)
    w = balance_weights(files, [root], "source_class")
    assert w is not None and abs(w.sum() - 1) < 1e-9
    by_source: dict[str, float] = {}
    by_class: dict[tuple, float] = {}
    for f, p in zip(files, w, strict=True):
        src = source_of(f, [root])
        by_source[src] = by_source.get(src, 0) + p
        by_class[(src, scene_label(f))] = by_class.get((src, scene_label(f)), 0) + p
    assert set(by_source) == {"aid", "maps", "neon", "rsscn7"}
    assert np.allclose(list(by_source.values()), 0.25)
    rsscn7 = [v for (s, _), v in by_class.items() if s == "rsscn7"]
    assert len(rsscn7) == 7 and np.allclose(rsscn7, 0.25 / 7)
    assert balance_weights(files, [root], "none") is None
    with pytest.raises(ConfigError, match="data.balance"):
        balance_weights(files, [root], "by_colour")
    # the sampler draws by the weights: neon (79 of 3,339 files) gets about a quarter of the draws
    sampler = EpochSampler(len(files), 8, seed=0, weights=w)
    drawn = [files[i] for _, i in (k for s in range(40) for k in sampler.keys_at(s))]
    neon = sum(source_of(f, [root]) == "neon" for f in drawn) / len(drawn)
    assert 0.17 < neon < 0.33
    assert sampler.keys_at(3) == EpochSampler(len(files), 8, seed=0, weights=w).keys_at(3)
