"""Train the restoration networks (damage detector, inpainting net) on synthetic damage and save
them as one float16 file (default: the bundled src/aerocolor/models/restore.pt).

    python scripts/train_restore.py --which detector --minutes 20 --steps 1500
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from aerocolor.restore.model import BUNDLED
from aerocolor.restore.nets import INPAINT_BASES
from aerocolor.restore.train import TrainOptions, train_restore_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", choices=("both", "detector", "inpainter"), default="both")
    p.add_argument("--colour", nargs="+", default=[str(DATA / "color/train")])
    p.add_argument("--old", nargs="*", default=[str(DATA / "old/train")])
    p.add_argument("--out", type=Path, default=BUNDLED)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--minutes", type=float, default=0.0, help="Stop after this wall time.")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--max-images", type=int, default=600, help="Colour photos in the training pool (a seeded pick).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="Go on from this restoration model's nets.")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--inpaint-base", choices=INPAINT_BASES, default="smooth+seen",
                   help="The inpainter corrects a fill seeing the damaged pixels: Telea's turning into the mean "
                        "of the surroundings deep inside large areas (smooth+seen) or Telea's alone (telea+seen); "
                        "or corrects Telea's fill without them (telea), or fills zeroed holes (zeros).")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    opts = TrainOptions(colour=a.colour, old=a.old, steps=a.steps, minutes=a.minutes, crop=a.crop,
                        batch=a.batch, width=a.width, max_images=a.max_images, seed=a.seed, init=a.init, lr=a.lr,
                        inpaint_base=a.inpaint_base)
    print(train_restore_model(opts, a.out, a.which))


if __name__ == "__main__":
    main()
