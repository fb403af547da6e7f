"""Training throughput of pix2pix, CycleGAN, CUT and FastCUT on the CPU (or GPU), in images per second.

Prints a Markdown table. Each row trains the real model on real crops from ../shared/data
(random data if that folder is absent) for a few warm-up steps, then times the steps (wall time,
data loading included).

    python benchmarks/train_throughput.py                # the standard rows, 2 CPU threads
    python benchmarks/train_throughput.py --steps 20 --threads 2 --device cpu
    python benchmarks/train_throughput.py --match cut --steps 3 --warmup 1   # CUT and FastCUT rows
"""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from pathlib import Path

import torch

from aerocolor.config import load_config
from aerocolor.data.datasets import EpochSampler
from aerocolor.methods import get_method
from aerocolor.train import build_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATA = SHARED / "color" / "train" / "maps"
OLD = SHARED / "old" / "train" / "gsi1960s"
# the reference unpaired setups: ResNet 9 blocks, instance norm, no dropout, LSGAN
UNPAIRED = ["model.nets.netG=resnet_9blocks", "model.nets.norm=instance", "model.nets.dropout=false",
            "model.gan_mode=lsgan"]

ROWS = [
    # (label, overrides, batch size)
    ("unet_256 rgb", ["model.nets.netG=unet_256"], 1),
    ("unet_256 rgb, channels_last", ["model.nets.netG=unet_256", "train.channels_last=true"], 1),
    ("unet_256 rgb", ["model.nets.netG=unet_256"], 4),
    ("resnet_9blocks lab", ["model.nets.netG=resnet_9blocks", "model.color_mode=lab"], 1),
    ("resnet_9blocks lab", ["model.nets.netG=resnet_9blocks", "model.color_mode=lab"], 4),
    ("cyclegan resnet_9blocks rgb", ["model.method=cyclegan", *UNPAIRED], 1),
    ("cut resnet_9blocks rgb", ["model.method=cut", *UNPAIRED], 1),
    ("fastcut resnet_9blocks rgb", ["model.method=fastcut", *UNPAIRED], 1),
]


def batches(cfg, batch_size: int):
    method_cls = get_method(cfg.model.method)
    if DATA.is_dir() and OLD.is_dir():
        ds = build_dataset(cfg, method_cls)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=EpochSampler(len(ds), batch_size))
        yield from loader
    crop = cfg.data.crop_size
    while True:
        rgb, gray = torch.rand(batch_size, 3, crop, crop), torch.rand(batch_size, 1, crop, crop)
        mask = torch.ones(batch_size, 1, crop, crop)
        yield {"rgb": rgb, "gray": gray, "mask": mask, "b_rgb": rgb, "b_gray": rgb.mean(1, keepdim=True),
               "b_mask": mask}


def measure(overrides: list[str], batch_size: int, steps: int, warmup: int, device: str) -> float:
    cfg = load_config(None, [*overrides, f"optim.batch_size={batch_size}", "model.nets.ngf=64",
                             "model.nets.ndf=64", f"data.train=[{DATA}]", f"data.train_a=[{OLD}]"])
    dev = torch.device(device)
    method = get_method(cfg.model.method)(cfg.model).to(dev)
    if cfg.train.channels_last:
        method.to(memory_format=torch.channels_last)
    method.configure_optimizers(cfg.optim)
    method.train()
    data = batches(cfg, batch_size)

    def step():
        batch = {k: v.to(dev) for k, v in next(data).items()}
        if cfg.train.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        method.train_step(batch)

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--match", default="", help="only the rows whose label contains this, e.g. cut")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"training throughput (pix2pix unless named), 256x256 crops, ngf 64, ndf 64, fp32, {args.device}, "
          f"{args.threads} threads; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{datetime.date.today()}; data: {'real crops' if DATA.is_dir() else 'random'}\n")
    print("| configuration | batch | images/s | s/iteration |")
    print("|---|---|---|---|")
    for label, overrides, bs in [r for r in ROWS if args.match in r[0]]:
        ips = measure(overrides, bs, args.steps, args.warmup, args.device)
        print(f"| {label} | {bs} | {ips:.2f} | {bs / ips:.2f} |", flush=True)


if __name__ == "__main__":
    main()
