"""Calibrate a model's colour saturation (``model.chroma``) on the selection half of color/val.

A generator trained with an L1 term predicts, where a scene is ambiguous, the middle of the
plausible colours, so its colours come out fainter than real ones. Whether one multiplier on the
predicted a*, b* makes them better is a measurement (for the bundled model it did not: see the
model card, "Saturation"). This script colorizes the selection half
once, keeps the network's raw output, and scores each multiplier (mean CIEDE2000 against the
truth, colourfulness, FID against the truth, and FID of colorized old/val photos against
color/val). It keeps the multiplier with the best mean CIEDE2000 unless another, within
``--tolerance`` of that score, lowers FID by more than ``--fid-margin`` (differences of a few
tenths are noise on a few hundred images); then the one with the lowest FID among those. With
``--write`` it stores the choice in a copy of the checkpoint,
which ``colorize``, ``evaluate``, the web app and ONNX exports then use (``--chroma`` overrides it).

    python scripts/calibrate_chroma.py src/aerocolor/models/default.pt --write runs/calibrated.pt

The report half is never read. Torch uses 2 threads (EVAL_THREADS changes that).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from evaluate_default_model import DATA, val_half  # the selection/report split, beside this script
from tqdm import tqdm

from aerocolor.checkpoint import load_checkpoint, save_checkpoint
from aerocolor.colorize import to_gray
from aerocolor.data.datasets import nodata_mask
from aerocolor.evaluate import colorfulness
from aerocolor.fid import fid_features, frechet_distance
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import load_colorizer
from aerocolor.infer.colorizer import Colorizer, array_reader
from aerocolor.metrics import mean_ciede2000

GAINS = (0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2.0)


def raw_rows(colorizer: Colorizer, gray: np.ndarray) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """The blended raw output of one image, row strip by row strip (kept as float16)."""
    return [(top, g.clone(), raw.half()) for top, g, raw in colorizer.blend_tiles(array_reader(gray), *gray.shape)]


def coloured(colorizer: Colorizer, rows: list, shape: tuple[int, int], gain: float) -> np.ndarray:
    colorizer.chroma = gain
    out = np.empty(shape + (3,), np.float32)
    for top, g, raw in rows:
        out[top:top + g.shape[-2]] = colorizer.colour(raw.float(), g)
    return out


def scored(colorizer: Colorizer, images: list, gain: float, scores: list, colour: list
           ) -> Iterator[np.ndarray]:
    """The selection half at one multiplier, appending each image's CIEDE2000 and colourfulness."""
    for truth, mask, shape, raw in images:
        img = coloured(colorizer, raw, shape, gain)
        scores.append(mean_ciede2000(img, truth, mask))
        colour.append(colorfulness(img, mask))
        yield img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--gains", type=lambda s: [float(v) for v in s.split(",")], default=list(GAINS),
                    help="comma-separated multipliers to score (default: %(default)s)")
    ap.add_argument("--tolerance", type=float, default=0.01,
                    help="relative CIEDE2000 above the best that a pick may have (default 1%%)")
    ap.add_argument("--fid-margin", type=float, default=0.02,
                    help="relative FID drop that a multiplier other than the most accurate must bring "
                         "(default 2%%)")
    ap.add_argument("--old-limit", type=int, default=58, help="old/val photos for the old-photo FID")
    ap.add_argument("--write", type=Path, default=None, help="write the checkpoint with the chosen chroma here")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("EVAL_THREADS", "2")))
    colorizer = load_colorizer(args.checkpoint, "cpu", "torch", precision="float32")  # as the model card
    images = []
    for f in tqdm(val_half("selection"), desc="selection half", unit="image"):
        truth = as_rgb(read_image(f))
        gray = to_gray(truth)
        images.append((truth, nodata_mask(truth) > 0, gray.shape, raw_rows(colorizer, gray)))
    olds = [(g.shape, raw_rows(colorizer, g))
            for g in (read_image(f) for f in list_images(DATA / "old/val")[: args.old_limit])]
    truth_feats = fid_features(t for t, _, _, _ in images)
    reference = fid_features(read_image(f) for f in list_images(DATA / "color/val"))
    rows = []
    for gain in args.gains:
        scores, colour = [], []
        fid = frechet_distance(fid_features(scored(colorizer, images, gain, scores, colour)), truth_feats)
        old_fid = frechet_distance(
            fid_features(coloured(colorizer, raw, shape, gain) for shape, raw in olds), reference)
        rows.append((gain, float(np.nanmean(scores)), float(np.mean(colour)), fid, old_fid))
        print(f"chroma {gain:.2f}: CIEDE2000 {rows[-1][1]:.3f}, colourfulness {rows[-1][2]:.1f}, "
              f"FID {fid:.1f}, old/val FID {old_fid:.1f}", flush=True)
    truth_colour = np.mean([colorfulness(t, m) for t, m, _, _ in images])
    pick = min(rows, key=lambda r: r[1])
    better = [r for r in rows if r[1] <= pick[1] * (1 + args.tolerance) and r[3] < pick[3] * (1 - args.fid_margin)]
    pick = min(better, key=lambda r: r[3]) if better else pick
    print(f"\nSelection half ({len(images)} images, truth colourfulness {truth_colour:.1f}):\n")
    print("| chroma | mean CIEDE2000 | colourfulness | FID | old/val FID |\n|---|---|---|---|---|")
    for r in rows:
        mark = " (chosen)" if r is pick else ""
        print(f"| {r[0]:.2f}{mark} | {r[1]:.3f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} |")
    if args.write:
        ckpt = load_checkpoint(args.checkpoint)
        ckpt["config"]["model"]["chroma"] = pick[0]
        save_checkpoint(args.write, {k: v for k, v in ckpt.items() if k not in ("format", "aerocolor_version")})
        print(f"\n{args.write}: chroma {pick[0]:.2f}")


if __name__ == "__main__":
    main()
