"""Calibrate a restoration model's damage thresholds, one per damage type, and choose the damage
types its inpainting net fills, on the selection half of color/val; write both into the model's
notes (``damage_p``, see ``aerocolor.restore.restore.strength_threshold``, and
``fill_network_types``).

Gray crops get synthetic damage drawn with seeds that neither training (tag 1) nor the benchmark
(tag 2) uses. For each type in turn, every candidate P is scored by that type's F1 (pixels, type
must match) at the default strength; the best is kept when undamaged photos restored with all the
thresholds so far still change by at most --clean-budget gray levels on average. The net fills a
type when, inside that type's true damage, its PSNR against the clean photo beats Telea's by at
least --fill-margin dB. The report half is left to benchmarks/restore_quality.py.

    python scripts/calibrate_restore.py --write src/aerocolor/models/restore.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from aerocolor.data.damage import DAMAGE_TYPES, LABEL, draw_damage
from aerocolor.data.splits import val_half
from aerocolor.restore.fill import classical_fill, fill_region, network_fill
from aerocolor.restore.model import load_restore_model, save_restore_model
from aerocolor.restore.restore import DEFAULT_DAMAGE_P, RestoreOptions, Restorer
from aerocolor.restore.train import damage_regions, held_out_grays, pooled_psnr, region_error

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CALIBRATION_TAG = 3
CANDIDATES = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5)


def choose_network_types(model, cases, margin: float) -> list[str]:
    """The damage types whose true damage the net fills better than Telea by ``margin`` dB."""
    parts = {k: ([], []) for k in DAMAGE_TYPES}  # (Telea, net) region_error parts
    for clean, damaged, labels, _, _ in cases:
        mask = fill_region(labels)[1]
        fills = (classical_fill(damaged, mask), network_fill(model.inpainter, damaged, mask, model.inpaint_base))
        for k, region in damage_regions(labels, mask).items():
            for j, out in enumerate(fills):
                parts[k][j].append(region_error(out, clean, region))
    print("\n| damage | PSNR Telea | PSNR net |\n|---|---|---|")
    chosen = []
    for k, (telea, net) in parts.items():
        if not telea:
            continue
        psnr = pooled_psnr(telea), pooled_psnr(net)
        print(f"| {k} | {psnr[0]:.2f} | {psnr[1]:.2f} |")
        if psnr[1] >= psnr[0] + margin:
            chosen.append(k)
    print(f"net fills: {chosen or 'nothing (Telea everywhere)'}")
    return chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="Restoration model (default: bundled).")
    p.add_argument("--write", type=Path, default=None, help="Save the model with its thresholds here.")
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--clean-budget", type=float, default=0.3,
                   help="Most mean change (gray levels) allowed on undamaged photos (default 0.3).")
    p.add_argument("--fill-margin", type=float, default=0.25,
                   help="dB by which the net must beat Telea on a damage type to fill it (default 0.25).")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_restore_model(a.model)
    restorer = Restorer(model, RestoreOptions(device="cpu"))
    cases = []
    for i, clean in enumerate(tqdm(held_out_grays(val_half(DATA / "color/val", "selection"), a.images),
                                   desc="detect", unit="image")):
        damaged, labels = draw_damage(clean, [CALIBRATION_TAG, i])
        cases.append((clean, damaged, labels, restorer.damage_probabilities(damaged),
                      restorer.damage_probabilities(clean)))

    def score(damage_p: dict[str, float]) -> tuple[dict[str, float], float]:
        restorer.damage_p = damage_p
        counts = {k: np.zeros(3) for k in DAMAGE_TYPES}
        change = []
        for clean, damaged, labels, probs, clean_probs in cases:
            found = restorer.labels(probs, damaged, 0.5)
            for k in DAMAGE_TYPES:
                truth, pred = labels == LABEL[k], found == LABEL[k]
                counts[k] += [(truth & pred).sum(), (~truth & pred).sum(), (truth & ~pred).sum()]
            codes, false = fill_region(restorer.labels(clean_probs, clean, 0.5))
            change.append(np.abs(restorer.fill(clean, false, codes) - clean).mean() * 255)
        f1 = {k: 2 * tp / max(1.0, 2 * tp + fp + fn) for k, (tp, fp, fn) in counts.items()}
        return f1, float(np.mean(change))

    restorer.network_types = choose_network_types(model, cases, a.fill_margin)  # before: clean fills use it
    chosen: dict[str, float] = {}
    base_f1, base_change = score(chosen)
    print(f"default P {DEFAULT_DAMAGE_P} for every type: clean change {base_change:.3f} gray levels")
    print("\n| damage | P | threshold | F1 | clean change |\n|---|---|---|---|---|")
    for k in DAMAGE_TYPES:
        best = (base_f1[k], DEFAULT_DAMAGE_P, base_change)
        for cand in CANDIDATES:
            f1, change = score({**chosen, k: cand})
            print(f"| {k} | {cand} | {1 - cand:.2f} | {f1[k]:.3f} | {change:.3f} |")
            if change <= a.clean_budget and f1[k] > best[0] + 1e-3:
                best = (f1[k], cand, change)
        chosen[k] = best[1]
        base_f1, base_change = score(chosen)
    print(f"\nchosen: {chosen}; typed F1 {', '.join(f'{k} {v:.3f}' for k, v in base_f1.items())}; "
          f"clean change {base_change:.3f} gray levels")
    if a.write:
        model.notes["damage_p"] = chosen
        model.notes["fill_network_types"] = restorer.network_types
        print(save_restore_model(a.write, model))


if __name__ == "__main__":
    main()
