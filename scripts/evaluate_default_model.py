"""Numbers for docs/model-card.md: a model against the trivial baselines on color/val.

color/val is split per subfolder (aid, maps, neon, rsscn7): the first half of each sorted subfolder is
the *selection* half, the second half the *report* half that model choice never sees.

Baselines, each keeping the input's L*: gray output (a* = b* = 0) and the training set's mean
colour (the mean a*, b* over color/train). Prints a Markdown table of mean CIEDE2000 (overall and
per subfolder), colourfulness and FID (against the half's colour truth), and FID of old/val photos
against color/val, gray as they are and colorized by each model. For scale, that FID is also given
for the same number of photos drawn from color/train (three seeded draws), as real colour, as gray
and colorized by each model: genuine colour photos score the floor at this sample size (FID is
biased upward for small samples, so the floor is far above 0), and the colorized ones show how
close a model's colours come to it where the film itself is not in the way.

    python scripts/evaluate_default_model.py [CKPT ...] --half report

Torch uses 2 threads (the environment variable EVAL_THREADS changes that).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aerocolor.color import lab_to_rgb, lightness_from_gray, rgb_to_lab, to_tensor
from aerocolor.colorize import to_gray
from aerocolor.data import splits
from aerocolor.data.datasets import nodata_mask
from aerocolor.evaluate import colorfulness
from aerocolor.fid import fid_features, frechet_distance
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.infer.loading import is_onnx_file
from aerocolor.metrics import mean_ciede2000

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def val_half(half: str) -> list[Path]:
    return splits.val_half(DATA / "color/val", half)


def write_lists(folder: Path) -> None:
    """The two halves as image lists (paths relative to ``folder``), for training configs and studies."""
    folder.mkdir(parents=True, exist_ok=True)
    for half in ("selection", "report"):
        lines = [os.path.relpath(f.resolve(), folder.resolve()) for f in val_half(half)]
        (folder / f"{half}.txt").write_text("\n".join(lines) + "\n")
        print(f"{folder / f'{half}.txt'}: {len(lines)} images")


def mean_training_ab(limit: int = 600) -> np.ndarray:
    files = list_images(DATA / "color/train")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, min(limit, len(files))).astype(int)]
    sums, count = np.zeros(2), 0
    for f in picks:
        img = as_rgb(read_image(f))
        lab = rgb_to_lab(to_tensor(img))[0].numpy()
        m = nodata_mask(img).astype(bool)
        sums += lab[1:, m].sum(axis=1)
        count += m.sum()
    return sums / count


def colour_photo_floor(reference: np.ndarray, count: int, models: dict, draws: int = 3) -> dict[str, list[float]]:
    """FID against ``reference`` of ``count`` photos of color/train per seeded draw: as they are (real
    colour), their gray versions, and those colorized by each model. The first says what genuine
    colour photos score at this sample size; the last how close the models come on photos like
    the training ones, so the rest of an old-photo FID is the old film itself."""
    files = list_images(DATA / "color/train")
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {k: [] for k in ["real colour", "gray", *models]}
    for _ in range(draws):
        photos = [as_rgb(read_image(files[i])) for i in rng.choice(len(files), count, replace=False)]
        grays = [to_gray(p) for p in photos]
        out["real colour"].append(frechet_distance(fid_features(photos), reference))
        out["gray"].append(frechet_distance(fid_features(with_constant_ab(g, np.zeros(2)) for g in grays), reference))
        for k, c in models.items():
            out[k].append(frechet_distance(fid_features(c.colorize(g) for g in grays), reference))
    return out


def with_constant_ab(gray: np.ndarray, ab: np.ndarray) -> np.ndarray:
    g = torch.from_numpy(gray)[None, None]
    ab_t = torch.tensor(ab, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, *gray.shape)
    return lab_to_rgb(torch.cat([lightness_from_gray(g), ab_t], 1))[0].permute(1, 2, 0).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", help="models to score (default: the bundled model)")
    ap.add_argument("--half", choices=["selection", "report"], default="report")
    ap.add_argument("--old-limit", type=int, default=58)
    ap.add_argument("--no-fid", action="store_true", help="colour differences only (fast)")
    ap.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                    help="torch precision (float32, the default, compares across machines; bfloat16 is "
                         "what colorize runs on CPUs with native bfloat16)")
    ap.add_argument("--write-lists", metavar="DIR", default=None,
                    help="write selection.txt and report.txt (image lists for configs and studies) to DIR and exit")
    args = ap.parse_args()
    if args.write_lists:
        write_lists(Path(args.write_lists))
        return
    torch.set_num_threads(int(os.environ.get("EVAL_THREADS", "2")))
    models = {str(c): load_colorizer(c, "cpu", precision="auto" if is_onnx_file(c) else args.precision)
              for c in (args.checkpoints or [default_model_path()])}
    mean_ab = mean_training_ab()
    files = val_half(args.half)
    names = [*models, "gray (ab = 0)", "training mean colour"]
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in names}
    scores: dict[str, list[float]] = {k: [] for k in names}
    colourful: dict[str, list[float]] = {k: [] for k in [*names, "truth"]}
    truths, subsets = [], []
    for f in tqdm(files, desc=f"{args.half} half", unit="image"):
        truth = as_rgb(read_image(f))
        gray, mask = to_gray(truth), nodata_mask(truth)
        candidates = {k: c.colorize(gray) for k, c in models.items()}
        candidates |= {"gray (ab = 0)": with_constant_ab(gray, np.zeros(2)),
                       "training mean colour": with_constant_ab(gray, mean_ab)}
        for k, img in candidates.items():
            outputs[k].append(img)
            scores[k].append(mean_ciede2000(img, truth, mask))
            colourful[k].append(colorfulness(img, mask > 0))
        colourful["truth"].append(colorfulness(truth, mask > 0))
        truths.append(truth)
        subsets.append(f.parent.name)
    print(f"{args.half} half of color/val: {len(files)} images; training mean a*b* = "
          f"({mean_ab[0]:.2f}, {mean_ab[1]:.2f})\n")
    subs = sorted(set(subsets))
    print("| output | mean CIEDE2000 | " + " | ".join(f"{s} ({subsets.count(s)})" for s in subs)
          + " | colourfulness | FID vs truth |")
    print("|---" * (len(subs) + 4) + "|")
    truth_feats = None if args.no_fid else fid_features(truths)
    for k in names:
        per = [np.nanmean([v for v, s in zip(scores[k], subsets, strict=True) if s == sub]) for sub in subs]
        fid = "n/a" if truth_feats is None else f"{frechet_distance(fid_features(outputs[k]), truth_feats):.1f}"
        print(f"| {k} | {np.nanmean(scores[k]):.2f} | " + " | ".join(f"{v:.2f}" for v in per)
              + f" | {np.mean(colourful[k]):.1f} | {fid} |")
    print(f"| truth | 0 | {' | '.join('0' for _ in subs)} | {np.mean(colourful['truth']):.1f} | 0 |")
    if not args.no_fid:
        old = list_images(DATA / "old/val")[: args.old_limit]
        reference = fid_features(read_image(f) for f in list_images(DATA / "color/val"))
        print(f"\nFID of {len(old)} old/val photos against color/val:")
        print(f"- gray, as they are: {frechet_distance(fid_features(read_image(f) for f in old), reference):.1f}")
        for k, c in models.items():
            fid = frechet_distance(fid_features(c.colorize(read_image(f)) for f in old), reference)
            print(f"- colorized by {k}: {fid:.1f}")
        print(f"\nFor scale, the same FID for {len(old)} photos of color/train (three seeded draws): real "
              "colour photos score the floor at this sample size; their gray versions and colorizations "
              "show how much of an old photo's FID colour can remove:")
        for k, values in colour_photo_floor(reference, len(old), models).items():
            print(f"- {k}: " + ", ".join(f"{v:.1f}" for v in values) + f" (mean {np.mean(values):.1f})")


if __name__ == "__main__":
    main()
