"""Restoration quality on held-apart photos: gray versions of color/val images with synthetic
damage drawn with seeds training never used (tag 2; training draws with tag 1).

Prints four tables:
1. detection precision / recall / F1 per damage type (pixels; the type must match), and the
   share of each type's pixels found as any damage;
2. fill quality inside the true damage (one pixel wider) of each type: PSNR and SSIM of the
   Telea fill (the classical baseline), the smooth fill (Telea turning into the mean of the
   surroundings deep inside large areas: the network's starting point), the network fill and the
   auto choice, against the clean image;
3. the same by size of the damaged area, and for holes, what a fill would reach if it knew the
   clean photo's coarse content: the clean photo blurred (Gaussian, sigma 16 and 8 px) put into
   the hole (no fill can know it; it shows how far a smooth guess can go by PSNR);
4. end to end (detected masks, default strength), and per --strength: detection of any damage
   and the mean change of undamaged images, in gray levels.

    python benchmarks/restore_quality.py --images 40
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, label
from skimage.metrics import structural_similarity

from aerocolor.data.damage import DAMAGE_TYPES, LABEL, draw_damage
from aerocolor.data.splits import HALVES, val_half
from aerocolor.restore.fill import classical_fill, fill_region, network_fill, smooth_fill
from aerocolor.restore.model import load_restore_model
from aerocolor.restore.restore import RestoreOptions, Restorer, type_thresholds
from aerocolor.restore.train import damage_regions, held_out_grays, pooled_psnr, region_error

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HELD_OUT_TAG = 2
SIZE_BINS = (0, 16, 64, 256, 1024, 10**9)
STRENGTHS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
FILLS = ("classical", "smooth", "network", "auto")
ORACLE_SIGMAS = (16, 8)


def psnr_cell(parts: list[tuple[float, int]]) -> str:
    """The pooled PSNR of ``region_error`` parts for a table cell; '-' for none."""
    value = pooled_psnr(parts)
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--model", type=Path, default=None, help="Restoration model (default: bundled).")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--half", choices=HALVES, default="report",
                   help="Half of color/val (thresholds are calibrated on the selection half).")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_restore_model(a.model)
    restorer = Restorer(model, RestoreOptions(device="cpu"))
    grays = held_out_grays(val_half(DATA / "color/val", a.half), a.images)
    start = time.monotonic()
    counts = {k: np.zeros(4, np.int64) for k in DAMAGE_TYPES}  # tp, fp, fn, found as any damage
    fills = {k: {m: [] for m in FILLS} for k in DAMAGE_TYPES}
    ssims = {k: {m: [] for m in FILLS} for k in DAMAGE_TYPES}
    by_size = {b: {m: [] for m in ("classical", "network")} for b in SIZE_BINS[:-1]}
    end_to_end, damaged_err = [], []
    oracle = {sigma: [] for sigma in ORACLE_SIGMAS}
    sweep = {s: np.zeros(3, np.int64) for s in STRENGTHS}
    sweep_change: dict[float, list[float]] = {s: [] for s in STRENGTHS}
    for i, clean in enumerate(grays):
        damaged, labels = draw_damage(clean, [HELD_OUT_TAG, i])
        probs = restorer.damage_probabilities(damaged)
        found = restorer.labels(probs, damaged)
        clean_probs = restorer.damage_probabilities(clean)
        for strength in STRENGTHS:
            hit = restorer.labels(probs, damaged, strength) > 0
            false_codes, fill_false = fill_region(restorer.labels(clean_probs, clean, strength))
            truth_any = labels > 0
            sweep[strength] += [(truth_any & hit).sum(), (~truth_any & hit).sum(), (truth_any & ~hit).sum()]
            sweep_change[strength].append(np.abs(restorer.fill(clean, fill_false, false_codes) - clean).mean() * 255)
        for k in DAMAGE_TYPES:
            truth, pred = labels == LABEL[k], found == LABEL[k]
            counts[k] += [(truth & pred).sum(), (~truth & pred).sum(), (truth & ~pred).sum(),
                          (truth & (found > 0)).sum()]
        codes, mask = fill_region(labels)
        telea = classical_fill(damaged, mask)
        outs = {"classical": telea, "smooth": smooth_fill(damaged, mask, telea),
                "network": network_fill(model.inpainter, damaged, mask, model.inpaint_base) if model.inpainter
                else None}
        outs["auto"] = restorer.fill(damaged, mask, codes)
        ssim_maps = {m: structural_similarity(clean, np.clip(o, 0, 1), data_range=1.0, full=True)[1]
                     for m, o in outs.items() if o is not None}
        for k, region in damage_regions(labels, mask).items():
            for m, o in outs.items():
                if o is not None:
                    fills[k][m].append(region_error(o, clean, region))
                    ssims[k][m].append(ssim_maps[m][region].mean())
        holes = damage_regions(labels, mask).get("holes")
        for sigma in ORACLE_SIGMAS if holes is not None else ():
            oracle[sigma].append(region_error(gaussian_filter(clean, sigma), clean, holes))
        areas, n = label(mask)
        sizes = np.bincount(areas.ravel())
        for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
            sel = np.isin(areas, [j for j in range(1, n + 1) if lo <= sizes[j] < hi])
            if sel.any():
                for m in ("classical", "network"):
                    if outs[m] is not None:
                        by_size[lo][m].append(region_error(outs[m], clean, sel))
        restored, codes = restorer.restore(damaged)
        truth_any = labels > 0
        end_to_end.append(((restored - clean)[truth_any] ** 2).sum() / truth_any.sum())
        damaged_err.append(((damaged - clean)[truth_any] ** 2).sum() / truth_any.sum())

    print(f"machine: 2-core x86_64 CPU ({platform.processor() or platform.machine()}), torch threads "
          f"{a.threads}, {date.today()}, {len(grays)} images of the {a.half} half of color/val (320 px crops), "
          f"{time.monotonic() - start:.0f} s\n")
    print("| damage | precision | recall | F1 | found as any damage |\n|---|---|---|---|---|")
    for k, (tp, fp, fn, anyd) in counts.items():
        prec, rec = tp / max(1, tp + fp), tp / max(1, tp + fn)
        f1 = 2 * prec * rec / max(1e-9, prec + rec)
        print(f"| {k} | {prec:.3f} | {rec:.3f} | {f1:.3f} | {anyd / max(1, tp + fn):.3f} |")
    names = {"classical": "Telea", "smooth": "smooth", "network": "network", "auto": "auto"}
    print("\n| damage | " + " | ".join(f"PSNR {names[m]}" for m in FILLS) + " | "
          + " | ".join(f"SSIM {names[m]}" for m in FILLS) + " |")
    print("|---|" + "---|" * 2 * len(FILLS))
    for k in DAMAGE_TYPES:
        row = [psnr_cell(fills[k][m]) for m in FILLS]
        row += [f"{np.mean(ssims[k][m]):.3f}" if ssims[k][m] else "-" for m in FILLS]
        print(f"| {k} | {' | '.join(row)} |")
    print("\n| damaged area (pixels) | PSNR Telea | PSNR network |\n|---|---|---|")
    for lo, hi in zip(SIZE_BINS[:-1], SIZE_BINS[1:]):
        cells = []
        for m in ("classical", "network"):
            cells.append(psnr_cell(by_size[lo][m]))
        print(f"| {lo}-{hi if hi < 10**9 else 'more'} | {' | '.join(cells)} |")
    print("\nholes, the clean photo blurred put into them (a bound for smooth fills): "
          + ", ".join(f"sigma {sigma} px {psnr_cell(oracle[sigma])} dB" for sigma in ORACLE_SIGMAS))
    print("\nend to end (detected masks, auto fill): PSNR in the damage "
          f"{10 * np.log10(1 / np.mean(end_to_end)):.2f} dB "
          f"(damaged input {10 * np.log10(1 / np.mean(damaged_err)):.2f} dB)")
    print(f"\n| --strength | thresholds ({'/'.join(DAMAGE_TYPES)}) | any-damage precision | recall | F1 | "
          "undamaged images: mean change "
          "(gray levels) | max |\n|---|---|---|---|---|---|---|")
    for strength in STRENGTHS:
        tp, fp, fn = sweep[strength]
        prec, rec = tp / max(1, tp + fp), tp / max(1, tp + fn)
        thresholds = "/".join(f"{t:.2f}" for t in type_thresholds(strength, restorer.damage_p)[1:].tolist())
        print(f"| {strength} | {thresholds} | {prec:.3f} | {rec:.3f} | "
              f"{2 * prec * rec / max(1e-9, prec + rec):.3f} | {np.mean(sweep_change[strength]):.3f} | "
              f"{np.max(sweep_change[strength]):.3f} |")


if __name__ == "__main__":
    main()
