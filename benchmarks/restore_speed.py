"""Restoration speed (megapixels/s) and peak memory of ``restore_file`` on synthetic uint8
GeoTIFFs tiled from real aerial photos with synthetic damage; each size in a fresh process so
that its peak resident memory is its own.

    python benchmarks/restore_speed.py --sizes 1024 2048 4096
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "color" / "val" / "maps"


def build_raster(path: Path, size: int) -> None:
    """A size x size damaged uint8 GeoTIFF tiled from real photos, written in strips."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    from aerocolor.colorize import to_gray
    from aerocolor.data.damage import draw_damage
    from aerocolor.imageio import read_image

    photos = [to_gray(read_image(f)) for f in sorted(SHARED.glob("*.jpg"))[:8]]
    side = photos[0].shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=Affine(1, 0, 500000, 0, -1, 4500000), tiled=True) as dst:
        for row, top in enumerate(range(0, size, side)):
            strip = np.concatenate([photos[(row + k) % len(photos)] for k in range(-(-size // side))], axis=1)
            strip, _ = draw_damage(strip[:, :size], [5, row])
            rows = min(side, size - top)
            dst.write((strip[:rows] * 255 + 0.5).astype(np.uint8)[None], window=Window(0, top, size, rows))


def run_one(path: Path, out: Path, threads: int) -> dict:
    import torch

    from aerocolor.restore.restore import RestoreOptions, Restorer, restore_file

    torch.set_num_threads(threads)
    restorer = Restorer.load(None, RestoreOptions(device="cpu"))
    start = time.perf_counter()
    restore_file(restorer, path, out, progress=False)
    return {"seconds": time.perf_counter() - start,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(run_one(Path(a.one[0]), Path(a.one[1]), a.threads)))
        return
    print(f"machine: 2-core x86_64 CPU ({platform.machine()}), torch threads {a.threads}, {date.today()}\n")
    print("| size | megapixels | seconds | MP/s | peak memory (MB) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            path = Path(tmp) / f"scan_{size}.tif"
            build_raster(path, size)
            result = subprocess.run([sys.executable, __file__, "--threads", str(a.threads), "--one", str(path),
                                     str(Path(tmp) / "out")], capture_output=True, text=True, check=True)
            r = json.loads(result.stdout.strip().splitlines()[-1])
            mp = size * size / 1e6
            print(f"| {size} | {mp:.1f} | {r['seconds']:.1f} | {mp / r['seconds']:.2f} | {r['peak_mb']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
