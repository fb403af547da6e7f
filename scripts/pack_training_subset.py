"""Pack colour training imagery into one small folder, to carry to a machine that cannot read
../shared (a rented GPU, say) and train there.

Each source folder's subfolders (aid, maps, neon, ...) keep their names under OUT/train. An image
no larger than --max-side on either side is copied byte for byte (with --reencode, saved as JPEG at
--quality); a larger one is cut to one random crop of --crop pixels a side, or of its own side
where it is narrower (seeded, so a pack is reproducible), and saved as JPEG at --quality without
chroma subsampling. With --val-list, the listed validation images (except those whose path
contains a --val-skip text) are copied byte for byte to OUT/val/<subfolder>. Prints the pack's size.

The bundled model's GPU run (docs/model-card.md) trained on

    python scripts/pack_training_subset.py ../shared/data/color/train --out runs/pack \\
        --max-side 400 --crop 320 --val-list runs/splits/selection.txt --val-skip /maps/

which is 54 MB: AID and NEON whole, one 320 px crop of each 600 px maps image.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from aerocolor.imageio import list_images


def pack_train(sources: list[Path], out: Path, max_side: int, crop: int, quality: int, seed: int,
               reencode: bool = False) -> int:
    rng = np.random.default_rng(seed)
    count = 0
    for src in sources:
        if not src.is_dir():
            raise SystemExit(f"{src}: no such folder of colour training images")
        for sub in sorted(p for p in src.iterdir() if p.is_dir()) or [src]:
            dst = out / "train" / sub.name
            dst.mkdir(parents=True, exist_ok=True)
            for f in sorted(list_images(sub)):
                with Image.open(f) as im:
                    w, h = im.size
                    if max(w, h) <= max_side and not reencode:
                        shutil.copyfile(f, dst / f.name)
                    elif max(w, h) <= max_side:
                        im.convert("RGB").save(dst / f"{f.stem}.jpg", quality=quality, subsampling=0)
                    else:
                        cw, ch = min(crop, w), min(crop, h)  # a strip narrower than --crop keeps its width
                        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                        im.convert("RGB").crop((x, y, x + cw, y + ch)).save(
                            dst / f"{f.stem}.jpg", quality=quality, subsampling=0)
                count += 1
    return count


def pack_val(val_list: Path, out: Path, skip: list[str]) -> int:
    count = 0
    for line in val_list.read_text().splitlines():
        if not line.strip() or any(s in line for s in skip):
            continue
        f = (val_list.parent / line.strip()).resolve()
        if not f.is_file():
            raise SystemExit(f"{val_list}: {line.strip()} does not exist (write the lists again with "
                             "scripts/evaluate_default_model.py --write-lists)")
        dst = out / "val" / f.parent.name
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst / f.name)
        count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="+", type=Path, help="folders of colour training images")
    ap.add_argument("--out", type=Path, required=True, help="the pack (created)")
    ap.add_argument("--max-side", type=int, default=400, help="larger images are cropped")
    ap.add_argument("--crop", type=int, default=320, help="crop size for larger images")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the crops")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reencode", action="store_true",
                    help="save the images it does not crop as JPEG at --quality too (a smaller pack)")
    ap.add_argument("--val-list", type=Path, help="validation image list to copy (e.g. runs/splits/selection.txt)")
    ap.add_argument("--val-skip", action="append", default=[], help="leave out listed paths containing this")
    a = ap.parse_args()
    n = pack_train(a.sources, a.out, a.max_side, a.crop, a.quality, a.seed, a.reencode)
    m = pack_val(a.val_list, a.out, a.val_skip) if a.val_list else 0
    size = sum(f.stat().st_size for f in a.out.rglob("*") if f.is_file())
    print(f"{a.out}: {n} training and {m} validation images, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
