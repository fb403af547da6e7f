"""Colorization speed on a CUDA GPU: one prepared run for a machine with a GPU (a few minutes).

For each precision (float32, bfloat16: the default on a GPU) and batch size, colorizes a
synthetic GeoTIFF tiled from real aerial photos (as benchmarks/colorize_speed.py builds it) with
the bundled model on the GPU (torch backend, channels_last, page-locked reads, reader and writer
threads), after one warm-up run. The table gives output megapixels per second, the network work
per output megapixel, the achieved TFLOP/s, and that as a share of two ceilings measured in the
same run: a large bfloat16 matrix product (the GPU's practical bf16 peak) and one 128->128 3x3
convolution of the model's dominant shape in bfloat16 channels_last. Peak GPU memory too.

Then the GPU's output is compared with the CPU's (float32, the same tiles: the CPU's 768 px cut
lifted) on a crop: the largest difference in 8-bit levels and the mean CIEDE2000.

    python benchmarks/gpu_speed.py                         # 8192^2 raster, batches 4 8 16
    python benchmarks/gpu_speed.py --size 16384 --batches 8
    python benchmarks/gpu_speed.py --device cpu --size 1024 --batches 1 --compare 512   # a dry run

Where OUT is set (the device tool), the table is also written to $OUT/gpu_speed.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colorize_speed import CountingGenerator, build_raster, compare_outputs, flop_per_pixel  # noqa: E402

from aerocolor.infer import load_colorizer  # noqa: E402
from aerocolor.infer.loading import default_model_path  # noqa: E402
from aerocolor.infer.raster import RasterOptions, colorize_raster  # noqa: E402
from aerocolor.infer.torch_backend import load_method  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def ceilings(device: torch.device) -> dict[str, float]:
    """TFLOP/s of a 8192^3 bfloat16 matrix product and of a 128->128 3x3 bfloat16 convolution on
    (8, 128, 512, 512) in channels_last (smaller on the CPU)."""
    n, side, batch = (8192, 512, 8) if device.type == "cuda" else (1024, 128, 1)
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(device, torch.bfloat16)
    conv = conv.to(memory_format=torch.channels_last).eval()
    x = torch.randn(batch, 128, side, side, device=device, dtype=torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        matmul = 2 * n**3 / timed(lambda: a @ b, device, 5) / 1e12
        conv_rate = 2 * 9 * 128 * 128 * batch * side * side / timed(lambda: conv(x), device, 5) / 1e12
    return {"bf16 matmul": matmul, "bf16 conv 128->128 3x3": conv_rate}


def run(model: Path, raster: Path, out: Path, device: str, precision: str, batch: int,
        flop: tuple[float, float], cut: bool = True) -> dict:
    colorizer = load_colorizer(model, device, "torch", precision=precision)
    if not cut:
        colorizer.cut_tile = None
    counting = CountingGenerator(colorizer.generator)
    colorizer.generator = counting
    dev = colorizer.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev)
    start = time.perf_counter()
    colorize_raster(colorizer, raster, out, RasterOptions(batch_size=batch), progress=False)
    sync(dev)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "flop": counting.pixels * flop[0] + counting.stats_pixels * flop[1],
            "peak_gb": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=8192, help="raster side (pixels)")
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--precisions", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--compare", type=int, default=2048, help="side of the crop compared with the CPU (0: none)")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the bundled model)")
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_speed: no CUDA device here; run it on a machine with a GPU, or --device cpu for a dry run")
    model = a.model or default_model_path()
    method, _ = load_method(model)
    flop = (flop_per_pixel(method, stats_pass=False), flop_per_pixel(method, stats_pass=True))
    work = Path(tempfile.mkdtemp(prefix="gpu_speed_"))
    raster = work / "in.tif"
    build_raster(raster, a.size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peaks = ceilings(device)
    lines = [f"machine: {name}, torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"{a.size} x {a.size} uint8 GeoTIFF, bundled model ({flop[0] / 1e3:.1f} GFLOP per MP a pass)",
             "ceilings: " + ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in peaks.items()), "",
             "| precision | batch | seconds | MP/s | GFLOP per output MP | TFLOP/s | of bf16 matmul | of bf16 conv "
             "| peak GPU memory (GiB) |", "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    mp = a.size * a.size / 1e6
    run(model, raster, work / "warm.tif", a.device, "bfloat16", a.batches[0], flop)  # warm-up: kernels, cuDNN plans
    for precision in a.precisions:
        for batch in a.batches:
            r = run(model, raster, work / "out.tif", a.device, precision, batch, flop)
            tflops = r["flop"] / r["seconds"] / 1e12
            row = (f"| {precision} | {batch} | {r['seconds']:.1f} | {mp / r['seconds']:.1f} | "
                   f"{r['flop'] / 1e9 / mp:.0f} | {tflops:.1f} | {tflops / peaks['bf16 matmul']:.1%} | "
                   f"{tflops / peaks['bf16 conv 128->128 3x3']:.1%} | {r['peak_gb']:.2f} |")
            lines.append(row)
            print(row, flush=True)
    if a.compare:
        crop = work / "crop.tif"
        build_raster(crop, a.compare)
        for precision in a.precisions:
            run(model, crop, work / f"gpu_{precision}.tif", a.device, precision, a.batches[0], flop, cut=False)
        torch.set_num_threads(os.cpu_count() or 1)
        run(model, crop, work / "cpu.tif", "cpu", "float32", 1, flop, cut=False)
        lines.append(f"\nagainst the CPU (float32, the same tiles), {a.compare} x {a.compare} crop:")
        for precision in a.precisions:
            diff, de = compare_outputs(work / "cpu.tif", work / f"gpu_{precision}.tif")
            lines.append(f"- {precision}: largest difference {diff} 8-bit levels, mean CIEDE2000 {de:.4f}")
        print("\n".join(lines[-1 - len(a.precisions):]), flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
