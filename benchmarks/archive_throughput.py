"""Archive throughput: the same N real frames colorized by the local engine (in this process)
and by Ray workers on this machine, in megapixels per second, with each worker's peak memory.
Ray's start (the local cluster once; then per job its workers, each loading the model) is timed
separately from the work.

    python benchmarks/archive_throughput.py                 # 16 frames of 256 px, bundled model
    python benchmarks/archive_throughput.py --files 48 --size 384
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from aerocolor.archive import ArchiveOptions, run_archive
from aerocolor.archive.engines import RayEngine
from aerocolor.archive.manifest import Manifest
from aerocolor.archive.quality import cut_frames
from aerocolor.archive.worker import WorkSpec, peak_rss_mb
from aerocolor.infer.raster import RasterOptions

ROOT = Path(__file__).resolve().parents[1]
NAIP = ROOT.parent / "shared" / "data" / "geo" / "naip_series"


def frames_from_naip(out: Path, count: int, size: int) -> list[Path]:
    frames: list[Path] = []
    for raster in sorted(NAIP.glob("*.tif")):
        frames += cut_frames(raster, out, size, 0)
        if len(frames) >= count:
            break
    return frames[:count]


def run(frames: list[Path], out: Path, opts: RasterOptions, engine: str, workers: int) -> dict:
    t = time.perf_counter()
    summary = run_archive(frames, WorkSpec(out_dir=out, device="cpu", raster=opts),
                          ArchiveOptions(engine=engine, workers=workers, progress=False))
    wall = time.perf_counter() - t
    assert not summary.failed, summary.failed
    records = Manifest(out).latest().values()
    peaks: dict[int, float] = {}
    for r in records:
        peaks[r["pid"]] = max(peaks.get(r["pid"], 0.0), r["peak_rss_mb"])
    return {"engine": engine, "workers": workers, "mp": summary.megapixels, "wall": wall, "start": summary.startup,
            "peak": max(peaks.values()) if engine == "ray" else peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    opts = RasterOptions(tile=256, overlap=32)
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        frames = frames_from_naip(Path(tmp) / "frames", args.files, args.size)
        for threads in sorted({1, args.workers}):
            torch.set_num_threads(threads)
            rows.append({**run(frames, Path(tmp) / f"local{threads}", opts, "local", 1), "threads": threads})
        t = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        RayEngine(WorkSpec(out_dir=Path(tmp)), workers=args.workers).close()  # workers started once, warm
        start = time.perf_counter() - t
        for workers in sorted({1, args.workers}):
            rows.append({**run(frames, Path(tmp) / f"ray{workers}", opts, "ray", workers), "threads": 1})
        ray.shutdown()
    local1 = rows[0]["mp"] / (rows[0]["wall"] - rows[0]["start"])
    print(f"\n{args.files} frames of {args.size} px (NAIP, {rows[0]['mp']:.1f} MP), bundled model, tile 256; "
          f"{os.cpu_count()}-core {platform.machine()} CPU, {date.today()}; Ray start (cluster + one "
          f"worker process): {start:.1f} s\n")
    print("| engine | workers x threads | wall s | of which start s | MP/s after start | vs local 1 thread "
          "| MP/s with start | peak memory per worker (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["mp"] / (r["wall"] - r["start"])
        print(f"| {r['engine']} | {r['workers']} x {r['threads']} | {r['wall']:.1f} | {r['start']:.1f} | {rate:.3f} "
              f"| {rate / local1:.2f} | {r['mp'] / r['wall']:.3f} | {r['peak']:.0f} |")


if __name__ == "__main__":
    main()
