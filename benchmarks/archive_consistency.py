"""Colour consistency across the frames of a flight: a real raster is cut into overlapping
frames, colorized one by one (each with its own statistics) and with --consistent (one group,
shared statistics), and the mean CIEDE2000 between neighbouring frames over their overlaps is
printed; the reference is the seam error of a whole-raster run (the same frames as tiles of one
input, all with the whole raster's own statistics).

    python benchmarks/archive_consistency.py                        # two NAIP dates, 256 px frames
    python benchmarks/archive_consistency.py --rasters ../shared/data/geo/town_rgbn_5m.tif --size 192
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
import torch

from aerocolor.archive import ArchiveOptions, run_archive
from aerocolor.archive.job import GROUP_BLOCKS
from aerocolor.archive.quality import cut_frames, overlap_difference
from aerocolor.archive.worker import ArchiveWorker, WorkSpec
from aerocolor.infer.raster import RasterOptions, colorize_raster

ROOT = Path(__file__).resolve().parents[1]
NAIP = ROOT.parent / "shared" / "data" / "geo" / "naip_series"


def colorize_frames(frames: list[Path], out: Path, opts: RasterOptions, consistent: bool) -> list[Path]:
    summary = run_archive(frames, WorkSpec(out_dir=out, device="cpu", raster=opts),
                          ArchiveOptions(consistent=consistent, group_by="all", progress=False))
    assert not summary.failed, summary.failed
    return sorted(out.glob("*_color.tif"))


def whole_raster_seams(raster: Path, frames: list[Path], out: Path, opts: RasterOptions) -> list[Path]:
    """Each frame colorized with the statistics of the whole raster (as a tiled run of the whole
    raster gives every tile): the differences left are those of tile seams."""
    worker = ArchiveWorker(WorkSpec(out_dir=out, device="cpu", raster=opts))
    stats = worker.local(worker.group_stats(worker.sample(str(raster), GROUP_BLOCKS)))
    out.mkdir(parents=True, exist_ok=True)
    return [colorize_raster(worker.colorizer, f, out / f"{f.stem}_color.tif", opts, progress=False, stats=stats)
            for f in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rasters", nargs="+", type=Path,
                        default=[NAIP / "naip_nd_20090818_rgbn_5m.tif", NAIP / "naip_nd_20160816_rgbn_5m.tif"])
    parser.add_argument("--size", type=int, default=256, help="frame side (px)")
    parser.add_argument("--overlap", type=int, default=96, help="overlap between neighbouring frames (px)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    opts = RasterOptions(tile=args.size, overlap=min(64, args.size // 4))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for raster in args.rasters:
            base = Path(tmp) / raster.stem
            frames = cut_frames(raster, base / "frames", args.size, args.overlap)
            t = time.perf_counter()
            own, pairs = overlap_difference(colorize_frames(frames, base / "own", opts, False))
            shared, _ = overlap_difference(colorize_frames(frames, base / "consistent", opts, True))
            seams, _ = overlap_difference(whole_raster_seams(raster, frames, base / "whole", opts))
            with rasterio.open(raster) as src:
                shape = f"{src.width}x{src.height}"
            rows.append((raster.name, shape, len(frames), pairs, own, shared, seams, time.perf_counter() - t))
    print(f"\ninter-frame colour difference (mean CIEDE2000 over overlaps), bundled model, "
          f"{args.size} px frames overlapping by {args.overlap} px; {platform.machine()} CPU, "
          f"{args.threads} torch threads, {date.today()}\n")
    print("| raster | size | frames | overlapping pairs | own statistics | --consistent | ratio | "
          "whole-raster seams | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, shape, n, pairs, own, shared, seams, secs in rows:
        print(f"| {name} | {shape} | {n} | {pairs} | {own:.2f} | {shared:.2f} | {own / max(shared, 1e-9):.1f}x "
              f"| {seams:.2f} | {secs:.0f} |")
    if len(rows) > 1:
        own, shared = np.mean([r[4] for r in rows]), np.mean([r[5] for r in rows])
        print(f"| mean | | | | {own:.2f} | {shared:.2f} | {own / max(shared, 1e-9):.1f}x "
              f"| {np.mean([r[6] for r in rows]):.2f} | |")


if __name__ == "__main__":
    main()
