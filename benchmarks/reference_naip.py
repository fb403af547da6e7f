"""How much a colour reference helps: mean CIEDE2000 against the truth.

1. ../shared/data/geo/naip_series (one place on six dates): for every ordered pair, the gray
   version of date X colorized with the colour of date Y as the reference, against X's truth:
   (a) no reference (the bundled default model, and the reference model without one),
   (b) naive transfer (X's L* with Y's a*b* copied pixel by pixel),
   (c) the reference model with Y as a georeferenced reference (warped onto X's grid),
   (d) with --naip-palette, the reference model with Y as a palette only.
2. Palette mode on a half of color/val (AID and RSSCN7 images, whose names carry a scene class):
   the reference is the next image of the same class; no reference against the naive transfer
   of its mean a*b* against the model's palette mode.

    python benchmarks/reference_naip.py --model src/aerocolor/models/reference.pt
    python benchmarks/reference_naip.py --model runs/reference_model/best.pt --half selection
"""

from __future__ import annotations

import argparse
import platform
import time
from itertools import permutations
from pathlib import Path

import numpy as np
import rasterio
import torch
from tqdm import tqdm

from aerocolor.color import gray_from_rgb, lab_to_rgb, lightness_from_gray, to_tensor
from aerocolor.data.balance import scene_label
from aerocolor.data.datasets import as_rgb, nodata_mask
from aerocolor.imageio import list_images, read_image
from aerocolor.infer import default_model_path, load_colorizer, reference_model_path
from aerocolor.infer.reference import Grid, image_palette, raster_reference
from aerocolor.metrics import lab_of, mean_ciede2000

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def read_date(path: Path, shrink: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Grid]:
    """(colour HxWx3, gray HxW, data mask HxW, grid) of one NAIP date, averaged over blocks of
    ``shrink`` pixels a side (1: as it is)."""
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        h, w = src.height // shrink, src.width // shrink
        rgb = src.read([1, 2, 3], out_shape=(3, h, w), resampling=Resampling.average)
        rgb = rgb.transpose(1, 2, 0).astype(np.float32) / 255
        valid = src.dataset_mask(out_shape=(h, w)) > 0
        grid = Grid(src.crs, src.transform @ src.transform.scale(src.width / w, src.height / h), h, w)
    gray = gray_from_rgb(to_tensor(rgb))[0, 0].numpy()
    return rgb, gray, valid, grid


def on_grid(path: Path, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(colour HxWx3, data mask) of a date resampled (bilinear) onto another date's grid: the
    dates are a few metres and a row apart."""
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    with rasterio.open(path) as src, WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                               height=grid.height, resampling=Resampling.bilinear) as vrt:
        rgb = vrt.read([1, 2, 3]).transpose(1, 2, 0).astype(np.float32) / 255
        return rgb, vrt.dataset_mask() > 0


def with_ab(gray: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """The colour image with ``gray``'s L* and the a*b* ``ab`` (HxWx2, or a constant (2,))."""
    L = lightness_from_gray(torch.from_numpy(gray)[None, None])
    ab_t = torch.from_numpy(np.broadcast_to(ab, gray.shape + (2,)).astype(np.float32)).permute(2, 0, 1)[None]
    return lab_to_rgb(torch.cat([L, ab_t], dim=1))[0].permute(1, 2, 0).numpy()


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def naip_pairs(model, baseline, n_dates: int, shrink: int, palette: bool) -> None:
    files = sorted((DATA / "geo" / "naip_series").glob("*.tif"))[:n_dates]
    dates = {f: read_date(f, shrink) for f in files}
    scale = model.config.model.reference.scale
    no_ref = {f: (mean_ciede2000(baseline.colorize(d[1]), d[0], d[2]),
                  mean_ciede2000(model.colorize(d[1]), d[0], d[2])) for f, d in dates.items()}
    rows, scores = [], []
    for x, y in tqdm(list(permutations(files, 2)), desc="date pairs"):
        rgb, gray, valid, grid = dates[x]
        rgb_y, valid_y = on_grid(y, grid)
        both = valid & valid_y
        naive = mean_ciede2000(with_ab(gray, lab_of(rgb_y)[:, :, 1:]), rgb, both)
        local = raster_reference(y, grid, scale, warn=lambda _: None)
        model_score = mean_ciede2000(model.colorize(gray, reference=local), rgb, valid)
        s = [*no_ref[x], naive, model_score]
        if palette:
            s.append(mean_ciede2000(model.colorize(gray, reference=image_palette(y, scale)), rgb, valid))
        scores.append(s)
        rows.append([date_of(x), date_of(y), *(f"{v:.2f}" for v in s), "yes" if model_score < naive else "no"])
    mean = np.mean(scores, axis=0)
    beats = sum(r[-1] == "yes" for r in rows)
    rows.append(["**mean**", "", *(f"**{v:.2f}**" for v in mean), f"**{beats}/{len(rows)}**"])
    table(f"NAIP series at {5 * shrink} m/pixel: gray of date X, colour of date Y as the reference "
          "(mean CIEDE2000 vs X's truth)",
          ["X (gray)", "Y (reference)", "(a) bundled, no ref", "(a) ref model, no ref", "(b) naive transfer",
           "(c) ref model", *(["(d) ref model, palette of Y"] if palette else []), "(c) < (b)"], rows)


def date_of(path: Path) -> str:
    return path.stem.split("_")[2]


def palette_pairs(model, baseline, half: str, limit: int) -> None:
    groups: dict[str, list[Path]] = {}
    for sub in ("aid", "rsscn7"):
        items = list_images(DATA / "color" / "val" / sub)
        cut = len(items) // 2
        for f in items[:cut] if half == "selection" else items[cut:]:
            groups.setdefault(f"{sub}/{scene_label(f)}", []).append(f)
    scale = model.config.model.reference.scale
    per_source: dict[str, list[list[float]]] = {}
    for key, files in tqdm(sorted(groups.items()), desc="scene classes"):
        for i, f in enumerate(files[:limit]):
            if len(files) < 2:
                continue
            ref_path = files[(i + 1) % len(files)]
            rgb = as_rgb(read_image(f))
            mask = nodata_mask(rgb)
            gray = gray_from_rgb(to_tensor(rgb))[0, 0].numpy()
            palette = image_palette(ref_path, scale)
            naive = with_ab(gray, (palette.palette * 110).numpy())
            s = [mean_ciede2000(baseline.colorize(gray), rgb, mask), mean_ciede2000(model.colorize(gray), rgb, mask),
                 mean_ciede2000(naive, rgb, mask), mean_ciede2000(model.colorize(gray, reference=palette), rgb, mask)]
            per_source.setdefault(key.split("/")[0], []).append(s)
    rows = []
    every = [s for v in per_source.values() for s in v]
    for name, scores in [*sorted(per_source.items()), ("all", every)]:
        rows.append([name, str(len(scores)), *(f"{v:.2f}" for v in np.mean(scores, axis=0))])
    table(f"Palette mode on the {half} half of color/val (reference: another image of the same scene class)",
          ["images", "n", "bundled, no ref", "ref model, no ref", "naive (its mean a*b*)", "ref model, palette"],
          rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(reference_model_path()), help="the reference model")
    ap.add_argument("--baseline", default=str(default_model_path()), help="the model without references")
    ap.add_argument("--half", choices=["selection", "report"], default="selection")
    ap.add_argument("--per-class", type=int, default=3, help="palette part: images per scene class")
    ap.add_argument("--dates", type=int, default=6, help="NAIP part: the first N dates (a quick check)")
    ap.add_argument("--shrink", type=int, default=1, help="NAIP part: average blocks of N pixels first (2: 10 m)")
    ap.add_argument("--naip-palette", action="store_true", help="NAIP part: also (d), Y as a palette only")
    ap.add_argument("--skip", choices=["naip", "palette"], default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_colorizer(args.model, "cpu")
    baseline = load_colorizer(args.baseline, "cpu")
    print(f"machine: {platform.machine()} CPU, {torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}; "
          f"model {args.model}; baseline {args.baseline}")
    t0 = time.perf_counter()
    if args.skip != "naip":
        naip_pairs(model, baseline, args.dates, args.shrink, args.naip_palette)
    if args.skip != "palette":
        palette_pairs(model, baseline, args.half, args.per_class)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
