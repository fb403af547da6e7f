"""Raster colorization speed: an older source tree against this one, side by side, interleaved.

Each run colorizes a synthetic GeoTIFF tiled from real aerial photos (../shared/data/color/val/
maps) with the bundled model, in a fresh process whose PYTHONPATH is the tree under test, with
that tree's default tiling. The table gives output megapixels per second, the network work per
output megapixel (GFLOP, from the pixels each tree actually sends through the generator and its
statistics pass), the achieved GFLOP/s, and that as a share of a ceiling this script measures
itself: one 128->128 3x3 convolution of the model's dominant shape, the best of torch NCHW,
torch channels_last and onnxruntime. Old and new runs alternate, and each row records the load
average, since the machine may be shared. Outputs are compared (max difference in 8-bit levels,
mean CIEDE2000) against the old tree's torch output.

    git worktree add /tmp/base d27a4b4
    python benchmarks/colorize_speed.py --base /tmp/base/src --sizes 2048
    python benchmarks/colorize_speed.py --sweep 512 768 1024 1448   # generator MP/s by tile side
    python benchmarks/colorize_speed.py --layers 768   # where a torch generator pass spends its time

Memory (see memory_table): resident memory after loading and at the peak, with the reader/writer
threads on and off, for rasters given as HEIGHTxWIDTH (a raster as wide as a 16384^2 one but only
a few tile rows high has the same streaming buffers, so it stands in for it in minutes), and the
older tree side by side (--base):

    python benchmarks/colorize_speed.py --memory 2048x2048 896x16384 --base /tmp/base/src

The statistics pass alone (the whole-input statistics gathered before the tiles), run as one
batch and accumulated in chunks, time and peak memory:

    python benchmarks/colorize_speed.py --stats-memory 4096x4096 --backends torch onnx
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "color" / "val" / "maps"
NEW_SRC = ROOT / "src"


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


class CountingGenerator:
    """Wraps a colorizer's generator and counts the pixels of every call and statistics pass."""

    def __init__(self, inner):
        self.inner, self.pixels, self.stats_pixels = inner, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, gray, z, stats=None):
        self.pixels += gray.shape[0] * gray.shape[-2] * gray.shape[-1]
        return self.inner(gray, z, stats)

    def pooled_norm_stats(self, gray, z, ref=None):
        self.stats_pixels += gray.shape[0] * gray.shape[-2] * gray.shape[-1]
        # trees older than colour references take no ``ref``
        return self.inner.pooled_norm_stats(gray, z) if ref is None else self.inner.pooled_norm_stats(gray, z, ref)

    def accumulated_norm_stats(self, batches):
        def counted():
            for gray, z, ref in batches():
                self.stats_pixels += gray.shape[0] * gray.shape[-2] * gray.shape[-1]
                yield gray, z, ref
        return self.inner.accumulated_norm_stats(counted)


def flop_per_pixel(method, stats_pass: bool) -> float:
    """Convolution and matmul FLOP per input pixel of one generator pass (or of its statistics
    pass, which stops after the last whole-input layer), counted by torch on a 256 px input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aerocolor.color import net_input
    from aerocolor.nets.layers import StatsComplete, StatsScope, stats_scope

    gray = torch.rand(1, 1, 256, 256)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if stats_pass:
            with stats_scope(StatsScope(pool=True, stop_after=norm_layer_calls(method))):
                try:
                    method.generate(net_input(gray, method.mode))
                except StatsComplete:
                    pass
        else:
            method.generate(net_input(gray, method.mode))
    return counter.get_total_flops() / gray.numel()


def norm_layer_calls(method) -> int:
    import torch

    from aerocolor.color import net_input
    from aerocolor.nets.layers import StatsScope, stats_scope

    with torch.no_grad(), stats_scope(StatsScope(pool=True)) as scope:
        method.generate(net_input(torch.zeros(1, 1, 64, 64), method.mode))
    return scope.calls


def run_one(model: str, raster: str, backend: str, out: str) -> dict:
    """Colorize one raster in this process (whichever aerocolor PYTHONPATH gives) with its default
    tiling; report time, the pixels sent through the network and peak resident memory."""
    import torch

    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import RasterOptions, colorize_raster
    from aerocolor.infer.torch_backend import load_method

    colorizer = load_colorizer(model, "cpu", backend)
    chosen = getattr(colorizer, "backend", "") or backend
    counting = CountingGenerator(colorizer.generator)
    colorizer.generator = counting
    opts = RasterOptions()
    start = time.perf_counter()
    colorize_raster(colorizer, Path(raster), Path(out), opts, progress=False)
    seconds = time.perf_counter() - start
    method, _ = load_method(Path(model))
    full = flop_per_pixel(method, stats_pass=False)
    # the old ONNX graph could not stop early: its statistics pass ran the whole network
    stats = full if chosen.startswith("onnx") and not hasattr(counting.inner, "stats_only") \
        else flop_per_pixel(method, stats_pass=True)
    tile = opts.tile
    if hasattr(colorizer, "plan"):  # the tile side actually run (the CPU cut, equal tiles)
        import rasterio

        with rasterio.open(raster) as src:
            tile = colorizer.plan(src.height, src.width, opts.tile, opts.overlap)[2]
    return {"seconds": seconds, "flop": counting.pixels * full + counting.stats_pixels * stats,
            "tile": tile, "batch": opts.batch_size, "backend": chosen,
            "precision": getattr(counting.inner, "precision", "float32"),
            "threads": torch.get_num_threads(),
            "peak_mb": resident_mb("VmHWM")}


def conv_ceiling(side: int, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of one 128->128 3x3 convolution on a (1, 128, side, side) input: torch NCHW,
    torch channels_last and onnxruntime in float32, and torch channels_last in bfloat16 (the
    precision torch runs in on a CPU that computes it natively), best of ``repeats`` each."""
    import onnxruntime as ort
    import torch

    from aerocolor.infer.onnx import session_options

    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).eval()
    x = torch.rand(1, 128, side, side)
    flop = 2 * 9 * 128 * 128 * side * side
    path = Path(tempfile.mkdtemp()) / "conv.onnx"
    torch.onnx.export(conv, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    runs = {
        "torch NCHW": lambda: conv(x),
        "torch channels_last": lambda: cl_conv(cl_x),
        "onnxruntime": lambda: session.run(None, {"x": x.numpy()}),
        "torch channels_last bfloat16": lambda: bf_conv(bf_x),
    }
    cl_conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).eval().to(memory_format=torch.channels_last)
    cl_x = x.contiguous(memory_format=torch.channels_last)
    bf_conv, bf_x = copy.deepcopy(cl_conv).to(torch.bfloat16), cl_x.to(torch.bfloat16)  # .to is in place
    best = dict.fromkeys(runs, float("inf"))
    with torch.no_grad():
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: flop / t / 1e9 for name, t in best.items()}


def tile_sweep(model: str, sides: list[int], repeats: int = 2) -> None:
    """Generator megapixels per second by tile side, for both backends of this tree."""
    import torch

    from aerocolor.infer import load_colorizer

    colorizers = {b: load_colorizer(model, "cpu", b) for b in ("torch", "onnx")}
    print("| tile side | " + " | ".join(f"{b} MP/s" for b in colorizers) + " |")
    print("|---|" + "---|" * len(colorizers))
    for side in sides:
        gray = torch.rand(1, 1, side, side)
        best = dict.fromkeys(colorizers, float("inf"))
        for c in colorizers.values():
            c.raw_output(gray)
        for _ in range(repeats):
            for name, c in colorizers.items():
                start = time.perf_counter()
                c.raw_output(gray)
                best[name] = min(best[name], time.perf_counter() - start)
        print(f"| {side} | " + " | ".join(f"{side * side / 1e6 / best[b]:.3f}" for b in colorizers)
              + " |", flush=True)


def layer_flop(module, x, y) -> float:
    """FLOP of one convolution call (plain or transposed) from its input and output shapes."""
    import torch

    k = module.kernel_size[0] * module.kernel_size[1]
    if isinstance(module, torch.nn.ConvTranspose2d):  # each input pixel spreads over k outputs
        return 2.0 * x.shape[0] * x.shape[2] * x.shape[3] * k * module.in_channels * module.out_channels / module.groups
    return 2.0 * y.numel() * k * module.in_channels / module.groups


def layer_table(model: str, side: int, repeats: int = 3) -> None:
    """Time and GFLOP/s of each convolution and padding layer of the torch backend's inference
    copy of the generator, on one gray tile of ``side`` px, against the conv ceiling: which layers
    keep the whole pass below it."""
    import torch

    from aerocolor.infer import load_colorizer

    colorizer = load_colorizer(model, "cpu", "torch")
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.ReflectionPad2d)
    spent: dict[tuple, list[float]] = {}
    started: dict[int, float] = {}

    def before(module, inputs):
        started[id(module)] = time.perf_counter()

    def after(module, inputs, output):
        x = inputs[0]
        key = (type(module).__name__, tuple(x.shape[1:]), tuple(output.shape[1:]))
        row = spent.setdefault(key, [0.0, 0.0, 0])
        row[0] += time.perf_counter() - started[id(module)]
        row[1] += layer_flop(module, x, output) if not isinstance(module, torch.nn.ReflectionPad2d) else 0.0
        row[2] += 1

    for module in colorizer.generator.method.modules():
        if isinstance(module, kinds):
            module.register_forward_pre_hook(before)
            module.register_forward_hook(after)
    gray = torch.rand(1, 1, side, side)
    with torch.no_grad():
        colorizer.raw_output(gray)  # warm-up
        spent.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            colorizer.raw_output(gray)
        total = time.perf_counter() - start
    precision = colorizer.generator.precision
    ceiling = conv_ceiling(256)["torch channels_last" + (" bfloat16" if precision == "bfloat16" else "")]
    flop = sum(r[1] for r in spent.values())
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()}-core {os.uname().machine} CPU, "
          f"{torch.get_num_threads()} torch threads, load {load()}; torch backend ({precision}), one {side} px "
          f"tile, {repeats} passes; conv ceiling (128->128 3x3, 256 px, channels_last, {precision}) "
          f"{ceiling:.0f} GFLOP/s")
    print(f"whole pass: {total / repeats * 1e3:.0f} ms, {flop / repeats / 1e9:.1f} GFLOP, "
          f"{flop / total / 1e9:.0f} GFLOP/s ({100 * flop / total / 1e9 / ceiling:.0f}% of the ceiling)")
    print("| layer | input (C, H, W) | output | calls per pass | ms per pass | share of pass | GFLOP per pass | "
          "GFLOP/s | % of ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = sorted(spent.items(), key=lambda kv: -kv[1][0])
    for (kind, shape_in, shape_out), (secs, fl, calls) in rows:
        rate = fl / secs / 1e9 if fl else 0.0
        print(f"| {kind} | {shape_in} | {shape_out} | {calls // repeats} | {secs / repeats * 1e3:.0f} | "
              f"{100 * secs / total:.1f}% | {fl / repeats / 1e9:.2f} | {rate:.0f} | "
              f"{100 * rate / ceiling:.0f} |" if fl else
              f"| {kind} | {shape_in} | {shape_out} | {calls // repeats} | {secs / repeats * 1e3:.0f} | "
              f"{100 * secs / total:.1f}% | 0 | | |")
    rest = total - sum(r[0] for r in spent.values())
    print(f"| everything else (activations, context, colour) | | | | {rest / repeats * 1e3:.0f} | "
          f"{100 * rest / total:.1f}% | | | |")


def compare_outputs(reference: Path, other: Path) -> tuple[int, float]:
    """(max difference in 8-bit levels, mean CIEDE2000) between two colour GeoTIFFs."""
    import rasterio

    from aerocolor.metrics import mean_ciede2000

    diff, sample = 0, []
    with rasterio.open(reference) as a, rasterio.open(other) as b:
        # strip by strip: a 16384^2 output is 805 MB a file; CIEDE2000 on every 7th row and column
        for top in range(0, a.height, 1024):
            win = ((top, min(a.height, top + 1024)), (0, a.width))
            x, y = a.read(window=win), b.read(window=win)
            diff = max(diff, int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max()))
            step = 1 if a.width * a.height <= 4096 * 4096 else 7
            sample.append((x[:, ::step, ::step], y[:, ::step, ::step]))
    x, y = (np.concatenate(parts, axis=1) for parts in zip(*sample))
    de = mean_ciede2000(np.moveaxis(y, 0, -1) / 255.0, np.moveaxis(x, 0, -1) / 255.0)
    return diff, de


def model_for_older_trees(model: str) -> str:
    """The checkpoint as older trees can read it: inference-only config fields they do not know
    (``model.chroma`` at its no-op default) left out, in a temporary copy; the weights are the same."""
    import torch

    ckpt = torch.load(model, map_location="cpu", weights_only=True)
    if ckpt.get("config", {}).get("model", {}).get("chroma", 1.0) != 1.0:
        sys.exit(f"{model}: its chroma is not 1.0; older trees cannot apply it, so they would not compare")
    if "chroma" not in ckpt.get("config", {}).get("model", {}):
        return model
    del ckpt["config"]["model"]["chroma"]
    path = Path(tempfile.mkdtemp()) / Path(model).name
    torch.save(ckpt, path)
    return str(path)


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS), or its peak so far (VmHWM), in MB. (Not
    getrusage's ru_maxrss: a child process inherits its parent's through fork and exec.)"""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def run_stats_one(model: str, raster: str, backend: str, chunked: bool) -> dict:
    """The whole-input statistics pass alone on a raster (default tiling), one batch or chunked:
    seconds and its peak above everything before it."""
    import rasterio

    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import GrayRaster, RasterOptions

    colorizer = load_colorizer(model, "cpu", backend)
    if not chunked:
        colorizer.stats_chunk_pixels = 2**62
    opts = RasterOptions()
    with rasterio.open(raster) as src:
        gray = GrayRaster(src, opts, raster)
        tops, lefts, th, tw = colorizer.plan(src.height, src.width, opts.tile, opts.overlap)
        before = resident_mb("VmHWM")
        start = time.perf_counter()
        colorizer.norm_stats(gray.read, [(t, lft, th, tw) for t in tops for lft in lefts], None)
        seconds = time.perf_counter() - start
    peak = resident_mb("VmHWM")
    return {"seconds": seconds, "before_mb": before, "peak_mb": peak}


def stats_memory_table(shape: str, backends: list[str], model: str) -> None:
    """Peak memory and time of the statistics pass alone, as one batch and chunked, each run in a
    fresh process."""
    rows, cols = (int(v) for v in shape.lower().split("x"))
    with tempfile.TemporaryDirectory() as d:
        raster = Path(d) / f"mosaic_{rows}x{cols}.tif"
        build_raster(raster, cols, rows)
        print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; statistics pass of a {rows} x {cols} raster, "
              f"model {model}; load {load()}")
        print("| backend | statistics pass | seconds | peak before (MB) | peak (MB) | added (MB) |")
        print("|---|---|---|---|---|---|")
        for backend in backends:
            for chunked in (False, True):
                cmd = [sys.executable, __file__, "--model", model, "--one-stats", str(raster), backend,
                       "1" if chunked else "0"]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True
                                              ).stdout.strip().splitlines()[-1])
                print(f"| {backend} | {'chunked' if chunked else 'one batch'} | {r['seconds']:.1f} | "
                      f"{r['before_mb']:.0f} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['before_mb']:.0f} |",
                      flush=True)


def run_memory_one(model: str, raster: str, backend: str, io_threads: bool, tile: int = 0) -> dict:
    """Colorize one raster in this process: seconds, resident memory once the model is loaded,
    and the peak (the code under PYTHONPATH may predate the io_threads option); ``tile`` 0 is
    the tree's default tile side."""
    import torch

    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import RasterOptions, colorize_raster

    torch.set_num_threads(max(1, torch.get_num_threads()))
    colorizer = load_colorizer(model, "cpu", backend)
    loaded = resident_mb()
    out = Path(raster).with_name(f"out_{backend}_{os.getpid()}.tif")
    threads = {"io_threads": io_threads} if "io_threads" in inspect.signature(colorize_raster).parameters else {}
    start = time.perf_counter()
    opts = RasterOptions(tile=tile) if tile else RasterOptions()
    if tile and hasattr(colorizer, "cut_tile"):
        colorizer.cut_tile = None  # exactly this tile side, also on the CPU
    colorize_raster(colorizer, Path(raster), out, opts, progress=False, **threads)
    seconds = time.perf_counter() - start
    out.unlink()
    return {"seconds": seconds, "loaded_mb": loaded, "threads": bool(threads) and io_threads,
            "peak_mb": resident_mb("VmHWM")}


def memory_table(shapes: list[str], backends: list[str], model: str, base_src: Path | None,
                 tiles: list[int] | None = None, threads_options: tuple[bool, ...] = (True, False)) -> None:
    """Peak resident memory and MP/s per raster shape, backend, code (this checkout and
    ``base_src``), tile side (0: the tree's default) and reader/writer threads on or off; each run
    in a fresh process."""
    codes = [("new", str(NEW_SRC))] + ([("base", str(base_src))] if base_src else [])
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"model: {model}; each tree's default tiling, CPU, "
              f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
        print("| raster (rows x cols) | megapixels | backend | code | tile | I/O threads | seconds | MP/s | "
              "loaded (MB) | peak (MB) | peak - loaded (MB) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for shape in shapes:
            rows, cols = (int(v) for v in shape.lower().split("x"))
            raster = tmp / f"mosaic_{rows}x{cols}.tif"
            build_raster(raster, cols, rows)
            for backend in backends:
                for code, src, tile, threads in [(c, s, t, th) for c, s in codes for t in (tiles or [0])
                                                 for th in (threads_options if c == "new" else (False,))]:
                    env = {**os.environ, "PYTHONPATH": src}
                    cmd = [sys.executable, __file__, "--model", model, "--one-memory", str(raster),
                           backend, "1" if threads else "0", str(tile)]
                    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                                  env=env).stdout.strip().splitlines()[-1])
                    mp = rows * cols / 1e6
                    print(f"| {rows} x {cols} | {mp:.1f} | {backend} | {code} | {tile or 'default'} | "
                          f"{'on' if r['threads'] else 'off'} | {r['seconds']:.1f} | "
                          f"{mp / r['seconds']:.3f} | {r['loaded_mb']:.0f} | {r['peak_mb']:.0f} | "
                          f"{r['peak_mb'] - r['loaded_mb']:.0f} |", flush=True)
            raster.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, help="src folder of the older tree to compare with")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "auto"],
                    help="backends of this tree")
    ap.add_argument("--old-runs", nargs="+", default=["torch", "onnx", "torch+PASSIVE"],
                    choices=["torch", "onnx", "torch+PASSIVE"],
                    help="runs of the older tree (--base); torch was its default backend")
    ap.add_argument("--model", help="checkpoint (default: the bundled model)")
    ap.add_argument("--sweep", type=int, nargs="+", help="only print generator MP/s by tile side")
    ap.add_argument("--layers", type=int, metavar="SIDE",
                    help="only print the time and GFLOP/s of each layer of a torch pass on a SIDE px tile")
    ap.add_argument("--one", nargs=3, metavar=("RASTER", "BACKEND", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--memory", nargs="+", metavar="ROWSxCOLS", help="the memory table for these rasters")
    ap.add_argument("--one-memory", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--tiles", type=int, nargs="+",
                    help="memory table: exactly these tile sides (0: each tree's default tiling)")
    ap.add_argument("--io-threads", choices=("both", "on", "off"), default="both",
                    help="memory table: runs with the reader/writer threads on, off, or both")
    ap.add_argument("--stats-memory", metavar="ROWSxCOLS",
                    help="the statistics pass alone on this raster, one batch against chunked")
    ap.add_argument("--one-stats", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    clean_env = dict(os.environ)  # before aerocolor sets its process defaults: each tree sets its own
    from aerocolor.infer import default_model_path

    model = args.model or str(default_model_path())
    if args.one_memory:
        raster, backend, threads, tile = args.one_memory
        print(json.dumps(run_memory_one(model, raster, backend, threads == "1", int(tile))))
        return
    if args.one_stats:
        raster, backend, chunked = args.one_stats
        print(json.dumps(run_stats_one(model, raster, backend, chunked == "1")))
        return
    if args.stats_memory:
        stats_memory_table(args.stats_memory, [b for b in args.backends if b != "auto"], model)
        return
    if args.memory:
        memory_table(args.memory, [b for b in args.backends if b != "auto"], model, args.base, args.tiles,
                     {"both": (True, False), "on": (True,), "off": (False,)}[args.io_threads])
        return
    if args.one:
        print(json.dumps(run_one(model, *args.one)))
        return
    if args.sweep:
        tile_sweep(model, args.sweep)
        return
    if args.layers:
        layer_table(model, args.layers)
        return
    if not SHARED.is_dir():
        sys.exit(f"real imagery not found at {SHARED}")
    import torch

    trees = [("new", NEW_SRC, b, {}) for b in args.backends]
    if args.base:
        base = args.base.resolve()
        # the old tree as it is, and its torch backend with the new threading default, to tell
        # the gain of waiting passively on a busy machine from that of doing less, faster
        old_runs = {"torch": ("old", base, "torch", {}), "onnx": ("old", base, "onnx", {}),
                    "torch+PASSIVE": ("old+PASSIVE", base, "torch", {"OMP_WAIT_POLICY": "PASSIVE"})}
        trees = [old_runs[r] for r in args.old_runs] + trees
        # older trees get a copy they can read; this tree keeps the bundled file itself, whose
        # int8 model is tied to its bytes
        old_model = model_for_older_trees(model)
    cache = tempfile.mkdtemp()  # --backend auto measures once, into a fresh cache, before the runs
    if "auto" in args.backends:
        probe = (f"from aerocolor.infer import load_colorizer; "
                 f"print(load_colorizer({model!r}, 'cpu', 'auto').backend)")
        chosen = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                                env={**clean_env, "PYTHONPATH": str(NEW_SRC), "XDG_CACHE_HOME": cache})
        print(f"--backend auto chose: {chosen.stdout.strip()}")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()}-core "
          f"{os.uname().machine} CPU, {torch.get_num_threads()} torch threads; model {model}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for size in args.sizes:
            raster = tmp / f"mosaic_{size}.tif"
            build_raster(raster, size)
            ceiling = conv_ceiling(size // 4 if size <= 2048 else 256)
            # a run is measured against the ceiling of its own precision
            peaks = {"float32": max(v for k, v in ceiling.items() if "bfloat16" not in k),
                     "bfloat16": ceiling["torch channels_last bfloat16"]}
            print(f"\nconv ceiling (128->128 3x3, {size // 4 if size <= 2048 else 256} px): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()) + " GFLOP/s")
            print("| size | tree | backend | tile/batch | seconds | MP/s | GFLOP/MP | GFLOP/s | "
                  "% of conv ceiling | peak MB | max diff (8-bit) | mean dE00 | load (1/5/15 min) |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            reference = None
            for rep in range(args.repeats):
                for k, (tree, src, backend, extra) in enumerate(trees):
                    out = tmp / f"{k}_{backend}_{rep}.tif"
                    env = {**clean_env, **extra, "PYTHONPATH": str(src), "XDG_CACHE_HOME": cache}
                    run_model = old_model if args.base and src != NEW_SRC else model
                    cmd = [sys.executable, __file__, "--model", run_model, "--one", str(raster), backend, str(out)]
                    before = load()
                    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                                  env=env).stdout.strip().splitlines()[-1])
                    reference = reference or out
                    diff, de = compare_outputs(reference, out)
                    if out != reference:
                        out.unlink()
                    mp = size * size / 1e6
                    gflops = r["flop"] / 1e9 / r["seconds"]
                    label = f"auto: {r['backend'].split(' ')[0]}" if backend == "auto" else backend
                    precision = r.get("precision", "float32")
                    peak = peaks.get(precision, peaks["float32"])
                    if precision != "float32":
                        label += f" ({precision})"
                    print(f"| {size} | {tree} | {label} | {r['tile']}/{r['batch']} | "
                          f"{r['seconds']:.1f} | {mp / r['seconds']:.3f} | {r['flop'] / 1e9 / mp:.0f} | "
                          f"{gflops:.0f} | {100 * gflops / peak:.0f} | {r['peak_mb']:.0f} | {diff} | "
                          f"{de:.3f} | {before} |", flush=True)
            raster.unlink()


if __name__ == "__main__":
    main()
