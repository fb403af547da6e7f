"""The scene-class head on the generator's scene context, and tempered source/class balance."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from aerocolor.config import load_config
from aerocolor.data.balance import balance_weights, scene_ids, source_of
from aerocolor.errors import ConfigError
from aerocolor.imageio import list_images
from aerocolor.methods import get_method
from aerocolor.nets.generators import capture_scene_features
from aerocolor.train import build_dataset

RESNET = {"model.nets.netG": "resnet_6blocks", "model.nets.context": "true", "model.nets.norm": "instance",
          "model.color_mode": "lab"}


def test_balance_strength_tempers_the_shares(shared_data):
    root = shared_data / "color/train"
    files = list_images(root)
    counts: dict[str, int] = {}
    for f in files:
        counts[source_of(f, [root])] = counts.get(source_of(f, [root]), 0) + 1

    def shares(w):
        out: dict[str, float] = {}
        for f, p in zip(files, w, strict=True):
            out[source_of(f, [root])] = out.get(source_of(f, [root]), 0) + p
        return out

    natural = shares(balance_weights(files, [root], "source", 0.0))
    assert all(abs(natural[s] - n / len(files)) < 1e-9 for s, n in counts.items())
    sqrt = shares(balance_weights(files, [root], "source", 0.5))
    norm = sum(np.sqrt(n) for n in counts.values())
    assert all(abs(sqrt[s] - np.sqrt(n) / norm) < 1e-9 for s, n in counts.items())
    # NEON (79 files) is drawn more than its file count gives, AID (1,500) less, neither dominates
    assert natural["neon"] < sqrt["neon"] < 0.25 < sqrt["aid"] < natural["aid"]
    full = balance_weights(files, [root], "source_class", 1.0)
    assert np.allclose(full, balance_weights(files, [root], "source_class"))
    with pytest.raises(ConfigError, match="balance_strength 1.5"):
        balance_weights(files, [root], "source", 1.5)


def test_scene_ids_index_the_sorted_class_names(shared_data):
    files = list_images(shared_data / "color/train")
    ids, names = scene_ids(files)
    # 30 AID + 7 RSSCN7 classes; forest and parking are in both and are one class each
    assert len(names) == 35 and names == sorted(names) and {"forest", "parking", "riverlake"} <= set(names)
    by_name = dict(zip(map(str, files), ids, strict=True))
    aid = next(f for f in files if f.name.startswith("beach_beach_"))
    assert names[by_name[str(aid)]] == "beach"
    maps = next(f for f in files if "maps" in f.parts)
    assert by_name[str(maps)] == -1


def test_scene_head_learns_the_scene_classes_of_real_photos(shared_data, tmp_path):
    """A tiny ResNet with scene context: a few seeded steps on real AID photos of different
    classes; the scene loss falls and the batches carry each photo's class."""
    cfg = load_config(None, tiny_overrides(tmp_path, 12, **RESNET, **{
        "optim.lr_G": 0.002,
        "model.nets.ngf": 8, "data.train": f"[{shared_data / 'color/train/aid'}]",
        "model.options.lambda_scene": 1.0, "model.options.lambda_GAN": 0.01}))
    torch.manual_seed(0)
    cls = get_method("pix2pix")
    method = cls(cfg.model)
    method.configure_optimizers(cfg.optim)
    assert "netScene" in method.trainable_nets and "netScene" not in method.inference_nets
    dataset = build_dataset(cfg, cls)
    keys = [(0, i) for i in range(0, len(dataset), len(dataset) // 8)][:8]
    items = [dataset[k] for k in keys]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert [dataset.scene_names[int(s)] for s in batch["scene"]] == \
        [dataset.files[i].name.split("_")[0] for _, i in keys]
    losses = [float(method.train_step(batch)["G_scene"]) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_scene_head_needs_the_context_and_enough_outputs(shared_data, tmp_path):
    with pytest.raises(ConfigError, match="model.nets.context: true"):
        get_method("pix2pix")(load_config(None, tiny_overrides(tmp_path, 1, **{
            "model.options.lambda_scene": 0.1})).model)
    cfg = load_config(None, tiny_overrides(tmp_path, 1, **RESNET, **{
        "model.nets.ngf": 8, "data.train": f"[{shared_data / 'color/train/aid'}]",
        "model.options.lambda_scene": 0.1, "model.options.scene_classes": 4}))
    cls = get_method("pix2pix")
    method = cls(cfg.model)
    method.configure_optimizers(cfg.optim)
    item = build_dataset(cfg, cls)[(0, 1499)]  # the last AID class, beyond 4 outputs
    with pytest.raises(ConfigError, match="raise it to at least"):
        method.train_step({k: v[None] for k, v in item.items()})


def test_hybrid_scene_head_and_smaller_adaptation_batch(shared_data, tmp_path):
    cfg = load_config(None, tiny_overrides(tmp_path, 1, **RESNET, **{
        "model.method": "hybrid", "model.nets.ngf": 8,
        "data.train": f"[{shared_data / 'color/train/rsscn7'}]",
        "data.train_a": f"[{shared_data / 'old/train/gsi1960s'}]", "model.options.lambda_adapt": 0,
        "model.options.lambda_scene": 0.5, "model.options.adapt_batch": 1}))
    cls = get_method("hybrid")
    method = cls(cfg.model)
    method.configure_optimizers(cfg.optim)
    dataset = build_dataset(cfg, cls)
    items = [dataset[(0, i)] for i in (0, 300)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    assert batch["b_scene"].min() >= 0
    seen = []
    method.netG.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    losses = method.train_step(batch)
    assert {"G_scene", "G_stats"} <= set(losses) and seen == [2, 1]


def test_captured_scene_features_stay_with_their_thread():
    from aerocolor.nets.generators import SceneContext

    ctx = SceneContext(8, "instance").eval()
    found: dict[int, list] = {}

    def work(i):
        with capture_scene_features() as box:
            ctx(torch.full((1, 8, 16, 16), float(i)))
            found[i] = box

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(box) == 1 and box[0].shape == (1, 16) for box in found.values())
    with capture_scene_features() as outer:
        pass
    ctx(torch.zeros(1, 8, 16, 16))  # outside any capture nothing is kept
    assert outer == []
