"""Raster colorization speed (megapixels/s, torch and onnx backends) and peak memory on a curve of
sizes, for synthetic GeoTIFFs tiled from real aerial photos (../shared/data/color/val/maps).

Each size runs in a fresh process so that its peak resident memory is its own.

    python benchmarks/colorize_speed.py                   # sizes 2048 4096 8192 16384
    python benchmarks/colorize_speed.py --sizes 2048 --model runs/x/best.pt
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "color" / "val" / "maps"
# a cheap generator: the memory curve is about streaming, not about the network
CHEAP = ["model.color_mode=lab", "model.nets.netG=resnet_2blocks", "model.nets.ngf=8",
         "model.nets.norm=batch"]


def build_raster(path: Path, size: int) -> None:
    """A size x size uint8 GeoTIFF tiled from real photos, written strip by strip."""
    import rasterio
    from rasterio.transform import from_origin

    from aerocolor.colorize import to_gray
    from aerocolor.imageio import read_image

    photos = [to_gray(read_image(f)) for f in sorted(SHARED.glob("*.jpg"))[:16]]
    side = photos[0].shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", crs="EPSG:32618", tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate",
                       transform=from_origin(580000.0, 4510000.0, 1.0, 1.0)) as dst:
        for top in range(0, size, side):
            rows = min(side, size - top)
            strip = np.concatenate([photos[(top // side * 7 + k) % len(photos)]
                                    for k in range(-(-size // side))], axis=1)[:rows, :size]
            dst.write((strip * 255).astype(np.uint8)[None], window=((top, top + rows), (0, size)))


def model_checkpoint(tmp: Path) -> Path:
    from aerocolor.checkpoint import save_checkpoint
    from aerocolor.config import load_config
    from aerocolor.methods import get_method

    cfg = load_config(None, CHEAP)
    method = get_method(cfg.model.method)(cfg.model, training=False)
    return save_checkpoint(tmp / "cheap.pt", {"config": cfg.model_dump(mode="json"),
                                              "nets": method.nets_state(method.inference_nets)})


def run_one(model: str, raster: str, backend: str, tile: int, overlap: int, batch: int) -> dict:
    """Colorize one raster in this process; report time and peak resident memory."""
    import torch

    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import RasterOptions, colorize_raster

    torch.set_num_threads(max(1, torch.get_num_threads()))
    colorizer = load_colorizer(model, "cpu", backend)
    out = Path(raster).with_name(f"out_{backend}.tif")
    start = time.perf_counter()
    colorize_raster(colorizer, Path(raster), out,
                    RasterOptions(tile=tile, overlap=overlap, batch_size=batch), progress=False)
    seconds = time.perf_counter() - start
    out.unlink()
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--model", help="checkpoint (default: a cheap untrained lab ResNet, ngf 8)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--one", nargs=2, metavar=("RASTER", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.model, args.one[0], args.one[1], args.tile, args.overlap,
                                 args.batch_size)))
        return
    if not SHARED.is_dir():
        sys.exit(f"real imagery not found at {SHARED}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = args.model or str(model_checkpoint(tmp))
        print(f"model: {args.model or 'cheap lab ResNet (2 blocks, ngf 8)'}; tile {args.tile}, "
              f"overlap {args.overlap}, batch {args.batch_size}, CPU")
        print("| size | megapixels | backend | seconds | MP/s | peak memory (MB) |")
        print("|---|---|---|---|---|---|")
        for size in args.sizes:
            raster = tmp / f"mosaic_{size}.tif"
            build_raster(raster, size)
            for backend in args.backends:
                cmd = [sys.executable, __file__, "--model", model, "--tile", str(args.tile),
                       "--overlap", str(args.overlap), "--batch-size", str(args.batch_size),
                       "--one", str(raster), backend]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout.strip().splitlines()[-1])
                mp = size * size / 1e6
                print(f"| {size} | {mp:.1f} | {backend} | {r['seconds']:.1f} | "
                      f"{mp / r['seconds']:.2f} | {r['peak_mb']:.0f} |", flush=True)
            raster.unlink()


if __name__ == "__main__":
    main()
