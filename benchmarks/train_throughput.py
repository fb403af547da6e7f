"""Training throughput of pix2pix, CycleGAN, CUT and FastCUT on the CPU (or GPU), in images per second.

Prints a Markdown table. Each row trains the real model on real crops from ../shared/data
(random data if that folder is absent) for a few warm-up steps, then times the steps (wall time,
data loading included). Training runs in the precision ``aerocolor train`` uses (``train.amp``:
bfloat16 autocast on a GPU and on a CPU that computes bfloat16 natively, else float32);
``--amp off`` times float32.

    python benchmarks/train_throughput.py                # the standard rows, 2 CPU threads
    python benchmarks/train_throughput.py --steps 20 --threads 2 --device cpu
    python benchmarks/train_throughput.py --match cut --steps 3 --warmup 1   # CUT and FastCUT rows

An older source tree against this one, side by side: every row runs in a fresh process per tree
(PYTHONPATH set to the tree's src), old and new in turns, ``--repeats`` rounds, the best of each
counting:

    git worktree add /tmp/base d27a4b4
    python benchmarks/train_throughput.py --base /tmp/base/src --steps 6 --repeats 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from aerocolor.config import load_config
from aerocolor.data.datasets import EpochSampler
from aerocolor.methods import get_method
from aerocolor.train import build_dataset

try:
    from aerocolor.train import training_autocast
except ImportError:  # an older tree (--base): bfloat16 autocast on CUDA only
    def training_autocast(device, amp):
        return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp and device.type == "cuda" else None

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


NEW_SRC = Path(__file__).resolve().parents[1] / "src"


def measure(overrides: list[str], batch_size: int, steps: int, warmup: int, device: str,
            amp: bool = True) -> float:
    cfg = load_config(None, [*overrides, f"optim.batch_size={batch_size}", "model.nets.ngf=64",
                             "model.nets.ndf=64", f"data.train=[{DATA}]", f"data.train_a=[{OLD}]",
                             f"train.amp={str(amp).lower()}"])
    dev = torch.device(device)
    method = get_method(cfg.model.method)(cfg.model).to(dev)
    if cfg.train.channels_last:
        method.to(memory_format=torch.channels_last)
    if (autocast := training_autocast(dev, cfg.train.amp)) is not None:
        method.amp = autocast
    method.configure_optimizers(cfg.optim)
    method.train()
    data = batches(cfg, batch_size)

    def step():
        batch = {k: v.to(dev) for k, v in next(data).items()}
        if cfg.train.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in batch.items()}
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


def precision_used(device: str, amp: bool) -> str:
    return "bfloat16 autocast" if training_autocast(torch.device(device), amp) is not None else "float32"


def side_by_side(rows: list, args: argparse.Namespace) -> None:
    """Each row in a fresh process per tree, old and new in turns; the best round counts."""
    trees = [("old", args.base.resolve()), ("new", NEW_SRC)]
    print("| configuration | batch | old s/it | new s/it | new precision | speed-up |")
    print("|---|---|---|---|---|---|")
    for label, _, bs in rows:
        best: dict[str, float] = {}
        precision = ""
        for _ in range(args.repeats):
            for name, src in trees:
                cmd = [sys.executable, __file__, "--row", label, "--batch", str(bs), "--steps", str(args.steps),
                       "--warmup", str(args.warmup), "--threads", str(args.threads), "--device", args.device,
                       "--amp", args.amp]
                env = {**os.environ, "PYTHONPATH": str(src)}
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                              env=env).stdout.strip().splitlines()[-1])
                best[name] = max(best.get(name, 0.0), r["ips"])
                if name == "new":
                    precision = r["precision"]
        old, new = bs / best["old"], bs / best["new"]
        print(f"| {label} | {bs} | {old:.2f} | {new:.2f} | {precision} | {old / new:.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--match", default="", help="only the rows whose label contains this, e.g. cut")
    ap.add_argument("--amp", choices=["auto", "off"], default="auto",
                    help="auto: the precision aerocolor train uses (train.amp); off: float32")
    ap.add_argument("--base", type=Path, help="src folder of an older tree to compare with, side by side")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of old and new with --base")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # one row in this process, as JSON (for --base)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    amp = args.amp == "auto"
    if args.row is not None:
        overrides = next(o for label, o, bs in ROWS if label == args.row and bs == args.batch)
        ips = measure(overrides, args.batch, args.steps, args.warmup, args.device, amp)
        print(json.dumps({"ips": ips, "precision": precision_used(args.device, amp)}))
        return
    rows = [r for r in ROWS if args.match in r[0]]
    print(f"training throughput (pix2pix unless named), 256x256 crops, ngf 64, ndf 64, {args.device}, "
          f"{args.threads} threads; {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.1f}; data: {'real crops' if DATA.is_dir() else 'random'}\n")
    if args.base:
        side_by_side(rows, args)
        return
    precision = precision_used(args.device, amp)
    print("| configuration | batch | precision | images/s | s/iteration |")
    print("|---|---|---|---|---|")
    for label, overrides, bs in rows:
        ips = measure(overrides, bs, args.steps, args.warmup, args.device, amp)
        print(f"| {label} | {bs} | {precision} | {ips:.2f} | {bs / ips:.2f} |", flush=True)


if __name__ == "__main__":
    main()
