"""A contact sheet a person can look at: rows of gray | each model's colorization | truth for
photos of the selection half of color/val (one or two per subfolder), then rows of real old
photo | each model's colorization from old/val. Images are resized to one row height.

    python scripts/contact_sheet.py [CKPT ...] --out docs/contact-sheet.jpg

Without checkpoints, the bundled model. Needs ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from aerocolor.colorize import side_by_side, to_gray
from aerocolor.imageio import as_rgb, list_images, read_image, write_image
from aerocolor.infer import default_model_path, load_colorizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def resized(img: np.ndarray, height: int) -> np.ndarray:
    rgb = as_rgb(img)
    w = round(rgb.shape[1] * height / rgb.shape[0])
    im = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((w, height), Image.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def header(names: list[str], first_row: list[np.ndarray], width: int, gap: int = 8) -> np.ndarray:
    """A white strip naming each column above its first image."""
    strip = Image.new("RGB", (width, 22), "white")
    draw = ImageDraw.Draw(strip)
    x = 0
    for name, im in zip(names, first_row, strict=True):
        draw.text((x + 2, 5), name, fill="black")
        x += im.shape[1] + gap
    return np.asarray(strip, np.float32) / 255.0


def picks(per_subfolder: int) -> list[Path]:
    """Photos spread over the selection half (the first half of each sorted subfolder)."""
    out = []
    for sub in sorted((DATA / "color/val").iterdir()):
        items = list_images(sub)
        half = items[: len(items) // 2]
        out += [half[i] for i in np.linspace(0, len(half) - 1, per_subfolder + 2)[1:-1].round().astype(int)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--out", default="docs/contact-sheet.jpg")
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--per-subfolder", type=int, default=2)
    ap.add_argument("--old", type=int, default=4, help="old/val photos to show")
    ap.add_argument("--labels", nargs="*", default=None,
                    help="column titles of the models (default: their file names)")
    args = ap.parse_args()
    models = [load_colorizer(c, "cpu") for c in (args.checkpoints or [default_model_path()])]
    rows = []
    for f in picks(args.per_subfolder):
        truth = as_rgb(read_image(f))
        gray = to_gray(truth)
        rows.append([gray, *(m.colorize(gray) for m in models), truth])
    old = list_images(DATA / "old/val")
    for f in [old[i] for i in np.linspace(0, len(old) - 1, args.old + 2)[1:-1].round().astype(int)]:
        gray = read_image(f)
        rows.append([gray, *(m.colorize(gray) for m in models)])
    sized = [[resized(im, args.height) for im in row] for row in rows]
    lines = [side_by_side(*row) for row in sized]
    width = max(r.shape[1] for r in lines)
    lines = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=1.0) for r in lines]
    labels = args.labels or [Path(m.source).name for m in models]
    if len(labels) != len(models):
        ap.error(f"--labels: give one title per model ({len(models)})")
    names = ["gray", *labels, "truth"]
    old_names = ["old photo", *labels]
    old_start = len(rows) - args.old
    lines.insert(old_start, header(old_names, sized[old_start], width))
    lines.insert(0, header(names, sized[0], width))
    write_image(args.out, np.concatenate(lines, axis=0))
    print(f"{args.out}: rows of gray | {' | '.join(m.source for m in models)} | truth; "
          f"the last {args.old} rows are old/val photos (no truth)")


if __name__ == "__main__":
    main()
