"""FID feature extraction speed (images/s) of the standard FID Inception network on real colour
photos (../shared/data/color/val/aid), per batch size, and the time 1,000 images would take.

    python benchmarks/evaluate_speed.py                       # batch sizes 1 8 32, 64 images
    python benchmarks/evaluate_speed.py --batch-sizes 16 --images 128 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "color" / "val" / "aid"


def main() -> None:
    from aerocolor.evaluate import pick_images
    from aerocolor.fid import fid_features
    from aerocolor.imageio import read_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"real imagery not found at {SHARED}")

    images = [read_image(f) for f in pick_images([str(SHARED)], args.images)]
    fid_features(images[:2], 2, args.device)  # load the network and warm it up
    print(f"FID features, {len(images)} images of {images[0].shape[1]}x{images[0].shape[0]} "
          f"resized to 299, device {args.device}, {torch.get_num_threads()} threads")
    print(f"{'batch':>6} {'images/s':>9} {'1,000 images':>13}")
    for bs in args.batch_sizes:
        start = time.perf_counter()
        fid_features(images, bs, args.device)
        rate = len(images) / (time.perf_counter() - start)
        print(f"{bs:>6} {rate:>9.2f} {1000 / rate / 60:>11.1f} min")


if __name__ == "__main__":
    main()
