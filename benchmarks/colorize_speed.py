"""Raster colorization speed (megapixels/s, torch and onnx backends) and peak memory on a curve of
sizes, for synthetic GeoTIFFs tiled from real aerial photos (../shared/data/color/val/maps).

Each size runs in a fresh process so that its peak resident memory is its own.

    python benchmarks/colorize_speed.py                   # sizes 2048 4096 8192 16384
    python benchmarks/colorize_speed.py --sizes 2048 --model runs/x/best.pt

Memory (see memory_table): resident memory after loading and at the peak, with the reader/writer
threads on and off, for rasters given as HEIGHTxWIDTH (a raster as wide as a 16384^2 one but only
a few tile rows high has the same streaming buffers, so it stands in for it in minutes), and the
code of another checkout side by side (--base-src OTHER/src):

    python benchmarks/colorize_speed.py --memory 2048x2048 2048x16384 --model src/aerocolor/models/default.pt \
        --base-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
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


def build_raster(path: Path, size: int, rows: int | None = None) -> None:
    """A size x size (or rows x size) uint8 GeoTIFF tiled from real photos, written strip by strip."""
    import rasterio
    from rasterio.transform import from_origin

    from aerocolor.colorize import to_gray
    from aerocolor.imageio import read_image

    photos = [to_gray(read_image(f)) for f in sorted(SHARED.glob("*.jpg"))[:16]]
    side = photos[0].shape[0]
    height = rows or size
    with rasterio.open(path, "w", driver="GTiff", width=size, height=height, count=1,
                       dtype="uint8", crs="EPSG:32618", tiled=True, blockxsize=512,
                       blockysize=512, compress="deflate",
                       transform=from_origin(580000.0, 4510000.0, 1.0, 1.0)) as dst:
        for top in range(0, height, side):
            n = min(side, height - top)
            strip = np.concatenate([photos[(top // side * 7 + k) % len(photos)]
                                    for k in range(-(-size // side))], axis=1)[:n, :size]
            dst.write((strip * 255).astype(np.uint8)[None], window=((top, top + n), (0, size)))


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


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def run_memory_one(model: str, raster: str, backend: str, io_threads: bool) -> dict:
    """Colorize one raster in this process: seconds, resident memory once the model is loaded,
    and the peak (the code under PYTHONPATH may predate the io_threads option)."""
    import torch

    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import RasterOptions, colorize_raster

    torch.set_num_threads(max(1, torch.get_num_threads()))
    colorizer = load_colorizer(model, "cpu", backend)
    loaded = resident_mb()
    out = Path(raster).with_name(f"out_{backend}_{os.getpid()}.tif")
    threads = {"io_threads": io_threads} if "io_threads" in inspect.signature(colorize_raster).parameters else {}
    start = time.perf_counter()
    colorize_raster(colorizer, Path(raster), out, RasterOptions(), progress=False, **threads)
    seconds = time.perf_counter() - start
    out.unlink()
    return {"seconds": seconds, "loaded_mb": loaded, "threads": bool(threads) and io_threads,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory_table(shapes: list[str], backends: list[str], model: str | None, base_src: str | None) -> None:
    """Peak resident memory and MP/s per raster shape, backend, code (this checkout and
    ``base_src``) and reader/writer threads on or off; each run in a fresh process."""
    codes = [("new", str(ROOT / "src"))] + ([("base", base_src)] if base_src else [])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model = model or str(model_checkpoint(tmp))
        print(f"model: {model}; tile 512, overlap 64, batch 4, CPU, "
              f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
        print("| raster (rows x cols) | megapixels | backend | code | I/O threads | seconds | MP/s | "
              "loaded (MB) | peak (MB) | peak - loaded (MB) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for shape in shapes:
            rows, cols = (int(v) for v in shape.lower().split("x"))
            raster = tmp / f"mosaic_{rows}x{cols}.tif"
            build_raster(raster, cols, rows)
            for backend in backends:
                for code, src in codes:
                    for threads in ([True, False] if code == "new" else [False]):
                        env = {**os.environ, "PYTHONPATH": src}
                        cmd = [sys.executable, __file__, "--model", model, "--one-memory", str(raster),
                               backend, "1" if threads else "0"]
                        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                                      env=env).stdout.strip().splitlines()[-1])
                        mp = rows * cols / 1e6
                        print(f"| {rows} x {cols} | {mp:.1f} | {backend} | {code} | "
                              f"{'on' if r['threads'] else 'off'} | {r['seconds']:.1f} | "
                              f"{mp / r['seconds']:.3f} | {r['loaded_mb']:.0f} | {r['peak_mb']:.0f} | "
                              f"{r['peak_mb'] - r['loaded_mb']:.0f} |", flush=True)
            raster.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--model", help="checkpoint (default: a cheap untrained lab ResNet, ngf 8)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--one", nargs=2, metavar=("RASTER", "BACKEND"), help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs="+", metavar="ROWSxCOLS", help="the memory table for these rasters")
    ap.add_argument("--base-src", help="--memory: also run the code of this src folder")
    ap.add_argument("--one-memory", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_memory:
        raster, backend, threads = args.one_memory
        print(json.dumps(run_memory_one(args.model, raster, backend, threads == "1")))
        return
    if args.memory:
        memory_table(args.memory, args.backends, args.model, args.base_src)
        return
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
