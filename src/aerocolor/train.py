"""The training loop: one screen, top to bottom.

Devices (CPU, CUDA with bf16 autocast), multi-process training with DistributedDataParallel
(launched by torchrun), atomic checkpoints with exact resume, validation with best-checkpoint
keeping, TensorBoard scalars/images and a CSV of losses.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .color import gray_from_rgb, net_input, to_tensor
from .config import Config
from .data.balance import describe as describe_balance
from .data.datasets import EpochSampler, PairedColorDataset, nodata_mask
from .errors import ConfigError, TrainingError
from .imageio import as_rgb, list_images, read_image
from .infer import pick_device, torch_colorizer
from .methods import Method, get_method
from .methods.base import unwrap
from .metrics import as_float, mean_ciede2000
from .progress import progress_bar
from .runtime import cpu_bf16

LAST, BEST = "last.pt", "best.pt"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class RunState:
    step: int = 0
    best_metric: float = math.inf
    best_step: int = -1
    metrics: dict = field(default_factory=dict)


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def build_dataset(cfg: Config, method_cls: type[Method]):
    d = cfg.data
    if method_cls.data_kind == "paired":
        return PairedColorDataset(d.train, d.crop_size, cfg.train.seed, d.load_size, d.flip, d.rotate90,
                                  d.age, d.balance, d.balance_strength)
    from .data.unpaired import UnpairedDataset

    return UnpairedDataset(d.train_a, d.train, d.crop_size, cfg.train.seed, d.load_size, d.flip, d.rotate90,
                           d.age, d.balance, d.balance_strength)


def same_model(saved: dict, cfg: Config) -> bool:
    """Whether a checkpoint's model config is the one to train on (inference-only fields, like
    ``chroma``, and fields added since it was written, at their defaults, do not count)."""
    def trained(model: dict) -> dict:
        return {k: v for k, v in model.items() if k != "chroma"}
    return trained(type(cfg.model)(**saved).model_dump()) == trained(cfg.model.model_dump())


def total_steps(cfg: Config, steps_per_epoch: int) -> tuple[int, int]:
    """(total steps, steps at the constant learning rate before the linear decay)."""
    o = cfg.optim
    epochs = o.n_epochs + o.n_epochs_decay
    total = o.max_steps if o.max_steps is not None else epochs * steps_per_epoch
    constant = round(total * o.n_epochs / epochs) if epochs else total
    return total, constant


CALIBRATION_EPOCH = 2**31 - 1  # dataset key for calibration crops, never a training epoch


def linear_decay(total: int, constant: int):
    """The reference schedule: constant lr, then linear decay towards zero."""
    decay = max(total - constant, 1)
    return lambda step: 1.0 - max(0, step - constant) / (decay + 1)


def load_val_set(folders: list[str], limit: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(gray, colour truth, data mask) for up to ``limit`` validation images, spread evenly."""
    files = list_images(folders)
    if limit and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    items = []
    for f in files:
        rgb = as_rgb(read_image(f))
        gray = gray_from_rgb(to_tensor(rgb))[0, 0].numpy()
        items.append((gray, rgb, nodata_mask(rgb)))
    return items


def calibration_batches(dataset, count: int, batch_size: int, keys: tuple[str, ...] = ("gray",)
                        ) -> list[torch.Tensor]:
    """Generator inputs (gray crops, each of the samples' ``keys``) for batch-norm recalibration:
    ``count`` training samples spread over the dataset, drawn with their own key so the training
    sequence is untouched."""
    if count <= 0 or len(dataset) == 0:
        return []
    idx = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    samples = [dataset[(CALIBRATION_EPOCH, int(i))] for i in idx]
    grays = torch.stack([s[k] for s in samples for k in keys])
    return list(grays.split(max(batch_size, 16)))


@torch.no_grad()
def recalibrate_batchnorm(method: Method, batches: list[torch.Tensor], device: torch.device,
                          progress: bool = False) -> bool:
    """Set the inference networks' batch-norm running statistics to plain averages over fixed
    training batches. Training never reads running statistics (train mode normalises with the
    batch's own), so this changes evaluation only; it replaces momentum averages that lag behind
    fast-moving weights and made eval-mode outputs drift far from train-mode ones."""
    norms = [m for name in method.inference_nets if hasattr(method, name)
             for m in unwrap(getattr(method, name)).modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return False
    was_training, rng = method.training, rng_state()
    momenta = [m.momentum for m in norms]
    method.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for gray in progress_bar(batches, progress, desc="batch-norm calibration", unit="batch"):
        method.generate(net_input(gray.to(device), method.mode))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    method.train(was_training)
    set_rng_state(rng)  # a sampled latent code must not shift the training sequence
    return True


def validate(method: Method, val_set, device: torch.device, config: Config, progress: bool = False) -> float:
    """Mean CIEDE2000 of the colorized gray versions against their colour truth."""
    was_training = method.training
    colorizer = torch_colorizer(method, config, device)
    scores = [mean_ciede2000(colorizer.colorize(g), rgb, m)
              for g, rgb, m in progress_bar(val_set, progress, desc="validation", unit="image")]
    method.train(was_training)
    return float(np.nanmean(scores))


def is_widened(theirs: torch.Tensor, own: torch.Tensor) -> bool:
    """A convolution weight that gained input channels (e.g. a colour reference's planes)."""
    return (own.ndim == 4 and theirs.ndim == 4 and own.shape[1] > theirs.shape[1]
            and own.shape[:1] + own.shape[2:] == theirs.shape[:1] + theirs.shape[2:])


def widened(theirs: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """The checkpoint's weight on its channels, zero on the new ones: the network starts out
    computing exactly what the checkpoint's did."""
    out = torch.zeros_like(own)
    out[:, :theirs.shape[1]] = theirs
    return out


def warm_start(method: Method, path: str | Path) -> str:
    """Load the networks' weights from a checkpoint where names and shapes match (new layers, e.g.
    an added scene context, keep their initialisation; convolutions that gained input channels take
    the checkpoint's weights with zeros on the new channels); returns a one-line summary."""
    ckpt = load_checkpoint(Path(path))
    loaded, fresh, skipped = 0, 0, 0
    for name in method.trainable_nets:
        if not hasattr(method, name):
            continue
        net = unwrap(getattr(method, name))
        own, theirs = net.state_dict(), ckpt["nets"].get(name, {})
        take = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        take.update({k: widened(v, own[k]) for k, v in theirs.items() if k in own and is_widened(v, own[k])})
        skipped += len(theirs) - len(take)
        fresh += len(own) - len(take)
        loaded += len(take)
        net.load_state_dict({**own, **take})
    if loaded == 0:
        raise ConfigError(f"train.init_from {path}: no layer matches this model's networks; "
                          "give a checkpoint of the same method and generator")
    return (f"initialised from {path}: {loaded} tensors loaded, {fresh} new, "
            f"{skipped} of the checkpoint's not used")


def training_autocast(device: torch.device, amp: bool) -> Callable[[], Any] | None:
    """The mixed-precision context of the training passes (``train.amp``): bfloat16 autocast on a
    GPU and on a CPU that computes bfloat16 natively (:func:`~aerocolor.runtime.cpu_bf16`; 1.3x
    a pix2pix step there, 1.6-1.9x FastCUT and CycleGAN), None (float32) elsewhere. The losses
    are computed in float32 either way."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_bf16())):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return None


def train(cfg: Config, resume: bool = True, until_step: int | None = None, progress: bool = True) -> Path:
    """Train ``cfg.model.method``; returns the run folder (holding last.pt and best.pt)."""
    t = cfg.train
    device = pick_device(t.device)
    dd = setup_distributed(device)
    if device.type == "cuda" and dd.world > 1:
        device = torch.device("cuda", dd.local_rank)
        torch.cuda.set_device(device)
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(t.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)

    method_cls = get_method(cfg.model.method)
    method = method_cls(cfg.model).to(device)
    if t.channels_last:
        method.to(memory_format=torch.channels_last)
    if (autocast := training_autocast(device, t.amp)) is not None:
        method.amp = autocast
    optimizers = method.configure_optimizers(cfg.optim)
    dataset = build_dataset(cfg, method_cls)
    if cfg.data.balance != "none" and dd.main:
        colour = getattr(dataset, "files_b", getattr(dataset, "files", []))
        tqdm.write(f"colour images drawn by {cfg.data.balance}: "
                   f"{describe_balance(colour, getattr(dataset, 'weights_b', dataset.weights), cfg.data.train)}")
    spe = len(dataset) // (cfg.optim.batch_size * dd.world)
    steps, constant = total_steps(cfg, max(spe, 1))
    schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, linear_decay(steps, constant))
                  for k, o in optimizers.items()}

    state = RunState()
    if resume and (out / LAST).is_file():
        ckpt = load_checkpoint(out / LAST)
        if not same_model(ckpt["config"]["model"], cfg):
            raise ConfigError(f"{out / LAST} was trained with another model config; use a new --out or --no-resume")
        method.load_nets_state(ckpt["nets"])
        for k, o in optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        for k, s in schedulers.items():
            s.load_state_dict(ckpt["schedulers"][k])
        method.load_extra_state(ckpt.get("extra", {}))
        set_rng_state(ckpt["rng"])
        state = RunState(ckpt["step"], ckpt["best"]["metric"], ckpt["best"]["step"], ckpt.get("metrics", {}))
    elif t.init_from:
        summary = warm_start(method, t.init_from)
        if dd.main:
            tqdm.write(summary)
    if dd.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        method.wrap_nets(lambda net: DDP(net, device_ids=ids, broadcast_buffers=False))

    sampler = EpochSampler(len(dataset), cfg.optim.batch_size, t.seed, dd.rank, dd.world, state.step,
                           dataset.weights)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(t.seed),  # keeps the global RNG untouched for exact resume
    )
    val_set = load_val_set(cfg.data.val, cfg.data.val_max_images) if cfg.data.val and dd.main else []
    writer = _tensorboard(out) if dd.main else None
    log_path = out / "losses.csv"
    end = min(steps, until_step) if until_step is not None else steps

    calibration = calibration_batches(dataset, t.bn_calibration_images, cfg.optim.batch_size,
                                      method_cls.calibration_keys) if dd.main else []
    calibrated_at = -1

    def calibrate() -> None:  # once per step, however many evaluations and saves it has
        nonlocal calibrated_at
        if calibrated_at != state.step:
            recalibrate_batchnorm(method, calibration, device, progress)
            calibrated_at = state.step

    def save(path: Path) -> None:
        calibrate()
        save_checkpoint(path, {
            "config": cfg.model_dump(), "step": state.step, "nets": method.nets_state(),
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "rng": rng_state(), "extra": method.extra_state(),
            "best": {"metric": state.best_metric, "step": state.best_step}, "metrics": state.metrics,
        })

    bar = tqdm(total=end, initial=state.step, disable=not (progress and dd.main), unit="step",
               dynamic_ncols=True, desc=f"{cfg.model.method}")
    sums: dict[str, torch.Tensor] = {}
    n_sum, t0 = 0, time.perf_counter()
    method.train()
    batches = iter(loader)
    while state.step < end:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        if t.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
        losses = method.train_step(batch)
        check_finite(losses, state.step + 1, dataset, sampler)
        for s in schedulers.values():
            s.step()
        state.step += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0) + v
        n_sum += 1
        if state.step % t.log_every == 0 or state.step == end:
            means = {k: as_float(v) / n_sum for k, v in sums.items()}
            ips = n_sum * cfg.optim.batch_size * dd.world / (time.perf_counter() - t0)
            bar.set_postfix({**{k: f"{v:.3g}" for k, v in means.items()}, "img/s": f"{ips:.2f}"})
            if dd.main:
                _log_losses(log_path, state.step, means, ips, writer)
            sums, n_sum, t0 = {}, 0, time.perf_counter()
        bar.update(1)
        if dd.main and writer is not None and t.sample_every and state.step % t.sample_every == 0:
            _log_samples(writer, method, batch, state.step)
        if dd.main and val_set and (state.step % t.val_every == 0 or state.step == end):
            calibrate()
            score = validate(method, val_set, device, cfg, progress)
            state.metrics[str(state.step)] = score
            if writer is not None:
                writer.add_scalar("val/ciede2000", score, state.step)
            bar.write(f"step {state.step}: validation mean CIEDE2000 {score:.3f}")
            if score < state.best_metric:
                state.best_metric, state.best_step = score, state.step
                save(out / BEST)
        if dd.main and (state.step % t.save_every == 0 or state.step == end):
            save(out / LAST)
    bar.close()
    if dd.main and not val_set and state.step == end:
        save(out / BEST)  # without validation the best model is the latest
    if writer is not None:
        writer.close()
    if dd.world > 1:
        dist.barrier()
    return out


def check_finite(losses: dict, step: int, dataset, sampler: EpochSampler) -> None:
    """Stop at the first loss that is NaN or infinite, naming the step and the batch's files."""
    bad = [k for k, v in losses.items() if not math.isfinite(as_float(v))]
    if not bad:
        return
    files = sorted({str(f) for key in sampler.keys_at(step - 1) for f in dataset.sources(key)})
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    raise TrainingError(
        f"step {step}: loss {', '.join(bad)} is not finite; the batch's files: {shown}. Check those "
        "images for NaN or extreme values, or lower optim.lr_G / optim.lr_D; last.pt holds the last "
        "good state")


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tb"))


def _log_losses(path: Path, step: int, means: dict[str, float], ips: float, writer) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", *means.keys(), "images_per_s"])
        w.writerow([step, *(f"{v:.6g}" for v in means.values()), f"{ips:.4g}"])
    if writer is not None:
        for k, v in means.items():
            writer.add_scalar(f"loss/{k}", v, step)
        writer.add_scalar("speed/images_per_s", ips, step)


@torch.no_grad()
def _log_samples(writer, method: Method, batch: dict[str, torch.Tensor], step: int) -> None:
    from .color import net_input, rgb_from_output

    gray = batch.get("gray", batch.get("b_gray"))
    if gray is None:
        return
    was = method.training
    method.eval()
    out = method.generate(net_input(gray[:1].float(), method.mode))
    method.train(was)
    colour = rgb_from_output(out.float(), gray[:1].float(), method.mode)
    row = [gray[:1].float().expand(-1, 3, -1, -1), colour]
    if "rgb" in batch:
        row.append(batch["rgb"][:1].float())
    writer.add_image("samples/gray_output_truth", torch.cat(row, dim=3)[0], step)
