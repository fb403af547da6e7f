"""A before/after contact sheet of restoration on real 1960s photos (old/val): rows of
scan, then for each strength: restored | filled pixels in red over the restored photo.

    python scripts/restore_sheet.py --out docs/restore-sheet.jpg

Uses the bundled restoration model; needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aerocolor.colorize import side_by_side
from aerocolor.imageio import list_images, read_image, write_image
from aerocolor.restore.restore import RestoreOptions, Restorer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def overlay(gray: np.ndarray, codes: np.ndarray) -> np.ndarray:
    rgb = np.repeat(gray[:, :, None], 3, 2)
    rgb[codes > 0] = (1.0, 0.1, 0.1)
    return rgb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/restore-sheet.jpg"))
    p.add_argument("--photos", type=int, default=6)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--strengths", type=float, nargs="+", default=[0.5, 0.8])
    a = p.parse_args()
    torch.set_num_threads(1)
    restorers = [Restorer.load(a.model, RestoreOptions(device="cpu", strength=s)) for s in a.strengths]
    files = list_images(DATA / "old/val")
    rows = []
    for i in np.linspace(0, len(files) - 1, a.photos).round().astype(int):
        gray = read_image(files[i])
        panels = [gray]
        for restorer in restorers:
            restored, codes = restorer.restore(gray)
            panels += [restored, overlay(restored, codes)]
        rows.append(side_by_side(*panels))
        rows.append(np.ones((8, rows[-1].shape[1], 3), np.float32))
    print(write_image(a.out, np.concatenate(rows[:-1], axis=0)))


if __name__ == "__main__":
    main()
