"""Is the old-photo FID a measure of colour? The same FID against a film-like reference.

`scripts/evaluate_default_model.py` scores colorized old/val photos (1960s film of the Tokyo
region, 4.8 m per pixel) by FID against color/val (modern colour photos). Film and modern photos
differ in more than colour. This builds a film-like reference: each color/val photo with its
lightness replaced by the project's synthetic ageing of it (panchromatic film response, tone curve
and fog, blur, vignetting, grain, light JPEG; no dust or scratches) and its own a*, b* kept. Then it
prints, against that reference, the FID of the old photos (gray and colorized) and, for scale, of
58-photo draws of color/train made film-like the same way (as colour, as aged gray, and aged gray
colorized). If ageing took the film out of the old-photo FID, the colorized old photos would
score near the colorized aged modern photos.

    python scripts/old_photo_fid_reference.py [CKPT] [--limit 58]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aerocolor.color import net_target, rgb_from_output, to_numpy, to_tensor
from aerocolor.data.ageing import Ageing, age_image
from aerocolor.fid import fid_features, frechet_distance
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import default_model_path, load_colorizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILM = Ageing(dust=0, scratches=0, jpeg=0.2, seed=5)


def film_like(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(colour with aged lightness and its own a*b*, the aged gray alone) of an RGB photo."""
    rgb = as_rgb(photo)
    gray = age_image(rgb, rng, FILM)
    colour = rgb_from_output(net_target(to_tensor(rgb), "lab"), to_tensor(gray), "lab")
    return to_numpy(colour), gray


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None, help="model (default: the bundled model)")
    ap.add_argument("--limit", type=int, default=58, help="old/val photos, and the size of each draw")
    args = ap.parse_args()
    torch.set_num_threads(2)
    colorizer = load_colorizer(Path(args.checkpoint) if args.checkpoint else default_model_path(), "cpu",
                               precision="float32")
    rng = np.random.default_rng(0)
    reference = fid_features(film_like(read_image(f), rng)[0] for f in list_images(DATA / "color/val"))
    old = list_images(DATA / "old/val")[: args.limit]
    print(f"FID against film-like color/val (lightness aged, own a*b*), {len(old)} photos each:")
    print(f"- old/val, gray: {frechet_distance(fid_features(read_image(f) for f in old), reference):.1f}")
    colorized = frechet_distance(fid_features(colorizer.colorize(read_image(f)) for f in old), reference)
    print(f"- old/val, colorized: {colorized:.1f}")
    files = list_images(DATA / "color/train")
    picks = np.random.default_rng(0)
    rows: dict[str, list[float]] = {"film-like colour": [], "aged gray": [], "aged gray colorized": []}
    for draw in range(3):
        pairs = [film_like(read_image(files[i]), np.random.default_rng([draw, n]))
                 for n, i in enumerate(picks.choice(len(files), len(old), replace=False))]
        rows["film-like colour"].append(frechet_distance(fid_features(c for c, _ in pairs), reference))
        rows["aged gray"].append(frechet_distance(fid_features(np.repeat(g[..., None], 3, -1) for _, g in pairs),
                                                  reference))
        rows["aged gray colorized"].append(frechet_distance(fid_features(colorizer.colorize(g) for _, g in pairs),
                                                            reference))
    for k, values in rows.items():
        print(f"- color/train draws, {k}: " + ", ".join(f"{v:.1f}" for v in values) + f" (mean {np.mean(values):.1f})")


if __name__ == "__main__":
    main()
