"""Does an input normalisation make real old photos colorize more like colour photos?

Real scans differ from gray versions of modern photos in tone curve, contrast and haze. This
measures candidate normalisations of the gray input, applied before a model colorizes old/val
photos, by the FID of the results against color/val (lower: closer to real colour photos):

- none: the photo as it is;
- quantile: its gray-level quantiles mapped onto those of the gray versions of color/train
  (a tone-curve match to the training distribution; no-data black is left out);
- clahe: contrast-limited adaptive histogram equalisation (scikit-image, clip 0.01).

    python scripts/old_photo_preprocessing.py [CKPT ...] [--limit 58]

An input normalisation earns a place in the product only if it lowers this FID.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aerocolor.colorize import to_gray
from aerocolor.fid import fid_features, frechet_distance
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import default_model_path, load_colorizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LEVELS = np.linspace(0, 1, 101)


def training_quantiles(limit: int = 400) -> np.ndarray:
    files = list_images(DATA / "color/train")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, limit).astype(int)]
    values = np.concatenate([to_gray(as_rgb(read_image(f))).ravel()[::7] for f in picks])
    return np.quantile(values[values > 1 / 255], LEVELS)


def quantile_match(gray: np.ndarray, target: np.ndarray) -> np.ndarray:
    valid = gray > 1 / 255
    if valid.sum() < 16:
        return gray
    own = np.quantile(gray[valid], LEVELS)
    out = np.interp(gray, own, target).astype(np.float32)
    return np.where(valid, out, gray)


def clahe(gray: np.ndarray) -> np.ndarray:
    from skimage.exposure import equalize_adapthist

    return equalize_adapthist(gray, clip_limit=0.01).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", help="models (default: the bundled model)")
    ap.add_argument("--limit", type=int, default=58)
    args = ap.parse_args()
    torch.set_num_threads(2)
    target = training_quantiles()
    old = [read_image(f) for f in list_images(DATA / "old/val")[: args.limit]]
    reference = fid_features(read_image(f) for f in list_images(DATA / "color/val"))
    variants = {"none": lambda g: g, "quantile": lambda g: quantile_match(g, target), "clahe": clahe}
    print(f"FID of {len(old)} old/val photos against color/val (gray as they are: "
          f"{frechet_distance(fid_features(old), reference):.1f})\n")
    print("| model | input normalisation | FID |\n|---|---|---|")
    for ckpt in args.checkpoints or [default_model_path()]:
        colorizer = load_colorizer(ckpt, "cpu")
        for name, fn in variants.items():
            fid = frechet_distance(fid_features(colorizer.colorize(fn(g)) for g in old), reference)
            print(f"| {ckpt} | {name} | {fid:.1f} |", flush=True)


if __name__ == "__main__":
    main()
