"""Training on real images: loss falls, exact resume, atomic checkpoints, validation, DDP."""

import copy
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, Terminal, tiny_overrides

from aerocolor.checkpoint import load_checkpoint, save_checkpoint
from aerocolor.color import net_input, net_target
from aerocolor.config import load_config
from aerocolor.data.datasets import PairedColorDataset
from aerocolor.errors import ConfigError
from aerocolor.losses import masked_l1, mean_color_l1
from aerocolor.methods import get_method
from aerocolor.train import build_dataset, calibration_batches, recalibrate_batchnorm, train, warm_start


def _cfg(shared, out, steps, **extra):
    extra.setdefault("data.train", f"[{shared / 'color/train/aid'}]")
    return load_config(None, tiny_overrides(out, steps, **extra))


def _fixed_batch(cfg):
    ds = PairedColorDataset(cfg.data.train, 64, seed=123)
    items = [ds[(0, i)] for i in range(0, 400, 50)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _l1(method, batch):
    method.eval()
    with torch.no_grad():
        out = method.generate(net_input(batch["gray"], method.mode))
    return masked_l1(out, net_target(batch["rgb"], method.mode), batch["mask"]).item()


def test_tiny_pix2pix_learns_on_real_images(shared_data, tmp_path):
    # a short budget, so a higher generator learning rate than the research default
    cfg = _cfg(shared_data, tmp_path, 40, **{"train.seed": 0, "optim.batch_size": 4,
                                             "optim.lr_G": 1e-3, "model.nets.norm": "instance"})
    batch = _fixed_batch(cfg)
    torch.manual_seed(cfg.train.seed)
    before = _l1(get_method("pix2pix")(cfg.model), batch)
    train(cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    trained = get_method("pix2pix")(cfg.model)
    trained.load_nets_state(ckpt["nets"])
    after = _l1(trained, batch)
    assert ckpt["step"] == 40
    assert after <= 0.8 * before, (before, after)


def test_pix2pix_mean_color_term_adds_exactly_its_gradient(shared_data, tmp_path):
    """lambda_mean_color adds lambda x the gradient of mean_color_l1 to the generator, nothing else."""
    batch = _fixed_batch(_cfg(shared_data, tmp_path, 1))
    grads, reference = {}, None
    for lam in (0.0, 2.0):
        cfg = _cfg(shared_data, tmp_path, 1, **{"model.options": f"{{lambda_mean_color: {lam}}}"})
        torch.manual_seed(0)
        method = get_method("pix2pix")(cfg.model)
        method.configure_optimizers(cfg.optim)
        method.train()
        if reference is None:
            g = copy.deepcopy(method.netG)
            torch.manual_seed(1)
            out = g(net_input(batch["gray"], method.mode))
            mean_color_l1(out, net_target(batch["rgb"], method.mode), batch["mask"]).backward()
            reference = [p.grad.clone() for p in g.parameters()]
        torch.manual_seed(1)  # the same dropout in both runs
        losses = method.train_step(batch)
        assert ("G_mean_color" in losses) == (lam > 0)
        grads[lam] = [p.grad.clone() for p in method.netG.parameters()]
    for g0, g2, ref in zip(grads[0.0], grads[2.0], reference):
        torch.testing.assert_close(g2 - g0, 2.0 * ref, atol=1e-5, rtol=1e-3)


def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt, {f"{n}.{k}": v for n, sd in ckpt["nets"].items() for k, v in sd.items()}


def test_resume_continues_exactly(shared_data, tmp_path):
    extra = {"model.nets.dropout": True, "train.seed": 3}  # dropout draws random numbers
    straight = _cfg(shared_data, tmp_path / "straight", 8, **extra)
    train(straight, progress=False)
    halves = _cfg(shared_data, tmp_path / "halves", 8, **extra)
    train(halves, progress=False, until_step=4)
    assert load_checkpoint(tmp_path / "halves/last.pt")["step"] == 4
    torch.manual_seed(999)  # a resumed process starts with other random state
    train(halves, progress=False)
    a, wa = _weights(tmp_path / "straight/last.pt")
    b, wb = _weights(tmp_path / "halves/last.pt")
    assert b["step"] == 8 and wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6), k
    assert a["optimizers"]["G"]["state"][0]["step"] == b["optimizers"]["G"]["state"][0]["step"]


def test_resume_refuses_a_different_model(shared_data, tmp_path):
    from aerocolor.errors import ConfigError

    train(_cfg(shared_data, tmp_path, 2), progress=False)
    with pytest.raises(ConfigError, match="another model config"):
        train(_cfg(shared_data, tmp_path, 4, **{"model.nets.ngf": 16}), progress=False)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "nets": {}, "step": 1})

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"config": {}, "nets": {}, "step": 2})
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_validation_keeps_the_best_checkpoint(shared_data, tmp_path):
    cfg = _cfg(shared_data, tmp_path, 6, **{
        "data.val": f"[{shared_data / 'color/val/aid'}]", "data.val_max_images": 3,
        "train.val_every": 3, "model.color_mode": "lab",
    })
    train(cfg, progress=False)
    last = load_checkpoint(tmp_path / "last.pt")
    assert set(last["metrics"]) == {"3", "6"}
    best_step = min(last["metrics"], key=last["metrics"].get)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == int(best_step)
    assert all(0 < v < 100 for v in last["metrics"].values())
    assert (tmp_path / "losses.csv").read_text().startswith("step,D,G_GAN,G_L1")


def test_validation_and_batchnorm_calibration_show_progress_on_a_terminal(shared_data, tmp_path, monkeypatch):
    cfg = _cfg(shared_data, tmp_path, 1, **{
        "data.val": f"[{shared_data / 'color/val/aid'}]", "data.val_max_images": 2, "train.val_every": 1,
        "model.nets.norm": "batch", "train.bn_calibration_images": 4,
    })
    for progress in (True, False):
        stream = Terminal()
        monkeypatch.setattr(sys, "stderr", stream)
        train(cfg, resume=False, progress=progress)
        text = stream.getvalue()
        assert ("validation: " in text) == progress and ("/2 [" in text) == progress
        assert ("batch-norm calibration: " in text) == progress


def test_wgangp_and_hinge_objectives_train(shared_data, tmp_path):
    for mode in ("wgangp", "hinge", "lsgan"):
        cfg = _cfg(shared_data, tmp_path / mode, 3, **{"model.gan_mode": mode, "model.nets.norm": "instance"})
        train(cfg, progress=False)
        lines = (tmp_path / mode / "losses.csv").read_text().splitlines()
        assert all(v not in lines[-1] for v in ("nan", "inf"))


def test_ddp_two_processes_equal_one_process_with_double_batch(shared_data, tmp_path):
    """torchrun with 2 gloo processes (batch 1 each) == 1 process with batch 2."""
    extra = {"model.nets.norm": "instance", "model.nets.dropout": False, "train.seed": 5}
    single = _cfg(shared_data, tmp_path / "single", 4, **extra, **{"optim.batch_size": 2})
    train(single, progress=False)
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--standalone", "-m", "aerocolor", "train", "-q"]
    for s in tiny_overrides(tmp_path / "ddp", 4, **extra, **{"data.train": f"[{shared_data / 'color/train/aid'}]"}):
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    _, wa = _weights(tmp_path / "single/last.pt")
    b, wb = _weights(tmp_path / "ddp/last.pt")
    assert b["step"] == 4
    # equal up to float rounding (all-reduce order), which Adam amplifies where gradients are
    # tiny; a missing gradient sync would move many weights by ~lr (2e-4) per step
    diffs = torch.cat([(wa[k].float() - wb[k].float()).abs().flatten() for k in wa])
    assert diffs.max().item() < 1e-4 and diffs.mean().item() < 1e-7


def test_batchnorm_recalibration_replaces_drifted_running_statistics(shared_data, tmp_path):
    cfg = _cfg(shared_data, tmp_path, 1, **{"model.color_mode": "lab", "model.nets.norm": "batch",
                                             "model.nets.netG": "resnet_6blocks", "model.nets.dropout": False})
    method = get_method("pix2pix")(cfg.model)
    batches = calibration_batches(build_dataset(cfg, type(method)), 16, 16)
    assert len(batches) == 1 and batches[0].shape == (16, 1, 64, 64)
    x = net_input(batches[0], method.mode)
    with torch.no_grad():
        reference = copy.deepcopy(method.netG).train()(x)  # normalised by the batch's own statistics
    norms = [m for m in method.netG.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:  # running averages that lag far behind the weights
        m.running_mean.fill_(0.5)
        m.running_var.fill_(4.0)
    weights = {k: v.clone() for k, v in method.netG.state_dict().items()
               if "running" not in k and "num_batches" not in k}
    rng = torch.get_rng_state()

    def eval_output():
        method.eval()
        with torch.no_grad():
            return method.generate(x)

    assert (eval_output() - reference).abs().max() > 0.05
    assert recalibrate_batchnorm(method, batches, torch.device("cpu"))
    assert (eval_output() - reference).abs().max() < 2e-3  # unbiased vs biased variance only
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(m.momentum == 0.1 for m in norms)
    state = method.netG.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())


def _resnet_sets(context: bool) -> dict:
    return {"model.nets.netG": "resnet_6blocks", "model.nets.context": context, "model.color_mode": "lab"}


def test_init_from_starts_a_larger_model_from_a_trained_one(shared_data, tmp_path):
    """train.init_from: a generator with an added scene context starts with the weights (and the
    outputs) of the checkpoint it grows from; the run itself starts at step 0."""
    torch.manual_seed(0)
    src_cfg = _cfg(shared_data, tmp_path / "src", 2, **_resnet_sets(False))
    src = get_method("pix2pix")(src_cfg.model)
    save_checkpoint(tmp_path / "src.pt", {"config": src_cfg.model_dump(mode="json"), "nets": src.nets_state()})
    cfg = _cfg(shared_data, tmp_path / "run", 2, **_resnet_sets(True), **{"train.init_from": tmp_path / "src.pt"})
    grown = get_method("pix2pix")(cfg.model)
    summary = warm_start(grown, tmp_path / "src.pt")
    assert "16 new" in summary and "0 of the checkpoint's not used" in summary
    batch = _fixed_batch(cfg)
    src.eval(), grown.eval()
    with torch.no_grad():
        gray = net_input(batch["gray"], "lab")
        assert torch.equal(src.generate(gray), grown.generate(gray))
    train(cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2
    assert any(".context." in k for k in ckpt["nets"]["netG"])


def test_init_from_refuses_an_unrelated_checkpoint(shared_data, tmp_path):
    unet_cfg = _cfg(shared_data, tmp_path, 2)
    save_checkpoint(tmp_path / "unet.pt", {"config": unet_cfg.model_dump(mode="json"),
                                           "nets": {"netX": {"w": torch.zeros(1)}}})
    method = get_method("pix2pix")(_cfg(shared_data, tmp_path, 2, **_resnet_sets(True)).model)
    with pytest.raises(ConfigError, match="init_from .*unet.pt: no layer matches"):
        warm_start(method, tmp_path / "unet.pt")
