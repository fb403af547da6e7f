"""kill -9 in the middle of long jobs: a rerun resumes, and the results equal an uninterrupted run.

The jobs run as real ``aerocolor`` processes (a tiny model, small real rasters and images) and are
killed with SIGKILL once they have finished part of their work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from conftest import ROOT
from rasterio.transform import from_origin

from aerocolor.errors import OutputError
from aerocolor.imageio import atomic_write, remove_orphaned_temps
from aerocolor.infer import load_colorizer
from aerocolor.infer.journal import MAGIC, RECORD, RowJournal

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1", "AEROCOLOR_DEBUG": "1"}
TILE, OVERLAP = 96, 24


def aerocolor(*args: str) -> list[str]:
    return [sys.executable, "-m", "aerocolor", *args]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start ``cmd``, and kill -9 it as soon as ``ready()``; fails if it ends first."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the job ended (exit {proc.returncode}) before it could be killed: "
                            f"{proc.stderr.read()[-2000:]}")
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def complete_records(path: Path) -> int:
    """Complete records of a journal being written (read without its lock)."""
    data = path.read_bytes() if path.is_file() else b""
    pos = count = 0
    while pos + RECORD.size <= len(data):
        magic, _, size, _, _ = RECORD.unpack_from(data, pos)
        if magic != MAGIC or pos + RECORD.size + size > len(data):
            break
        pos += RECORD.size + size
        count += 1
    return count


@pytest.fixture(scope="module")
def naip_mosaic(shared_data: Path, tmp_path_factory) -> Path:
    """A 723 x 1868 4-band GeoTIFF (nodata 0) of two real NAIP rasters side by side."""
    files = sorted((shared_data / "geo/naip_series").glob("*.tif"))[:2]
    bands = []
    for f in files:
        with rasterio.open(f) as src:
            bands.append(src.read()[:, :723, :934])
            profile = src.profile
    data = np.concatenate(bands, axis=2)
    path = tmp_path_factory.mktemp("mosaic") / "naip_mosaic.tif"
    t = profile["transform"]
    profile.update(width=data.shape[2], height=data.shape[1],
                   transform=from_origin(t.c, t.f, t.a, -t.e))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_killed_raster_colorize_resumes_and_writes_the_same_bytes(tiny_checkpoint, naip_mosaic, tmp_path):
    args = ["-m", str(tiny_checkpoint), str(naip_mosaic), "--tile", str(TILE), "--overlap", str(OVERLAP),
            "--device", "cpu", "--batch-size", "2", "--backend", "torch"]
    whole = tmp_path / "whole"
    run(aerocolor("colorize", *args, "-o", str(whole)))
    out = tmp_path / "out"
    result = out / "naip_mosaic_color.tif"
    journal = out / f".{result.name}.partial"
    kill_when(aerocolor("colorize", *args, "-o", str(out), "--skip-existing"),
              lambda: complete_records(journal) >= 3)
    assert not result.exists(), "nothing half-written at the output path"
    done_before = complete_records(journal)
    leftovers = hidden(out)
    assert any(".tmp-" in name for name in leftovers), leftovers  # the killed run's temp GeoTIFF

    rerun = run(aerocolor("colorize", *args, "-o", str(out), "--skip-existing"))
    tops, lefts, _, _ = load_colorizer(tiny_checkpoint, "cpu").plan(723, 1868, TILE, OVERLAP)
    n_rows, n_cols = len(tops), len(lefts)
    assert f"resuming an interrupted run, {done_before} of {n_rows} tile rows already done" in rerun.stderr
    # the rerun did only the rows that were left: its progress bar starts at the kept tiles
    assert f"{done_before * n_cols}/{n_rows * n_cols}" in rerun.stderr
    assert result.read_bytes() == (whole / result.name).read_bytes()
    assert hidden(out) == [], "the journal, its sidecar and the orphaned temp file are gone"


def test_killed_folder_colorize_finishes_on_rerun(tiny_checkpoint, shared_data, tmp_path):
    images = sorted((shared_data / "color/val/neon").glob("*.jpg"))[:8]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in images:
        (folder / f.name).symlink_to(f)
    args = ["-m", str(tiny_checkpoint), str(folder), "--device", "cpu", "--tile", "128"]
    whole = tmp_path / "whole"
    run(aerocolor("colorize", *args, "-o", str(whole)))
    out = tmp_path / "out"
    kill_when(aerocolor("colorize", *args, "-o", str(out), "--skip-existing"),
              lambda: len(list(out.glob("*_color.png"))) >= 3)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*_color.png")}
    assert 3 <= len(kept) < len(images)
    run(aerocolor("colorize", *args, "-o", str(out), "--skip-existing"))
    names = sorted(p.name for p in whole.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names and len(names) == len(images)
    for name in names:
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # finished ones were not redone
    assert hidden(out) == []


def study_yaml(shared_data: Path, out: Path) -> Path:
    spec = out.parent / f"{out.name}.yaml"
    spec.write_text(f"""
name: resume
out_dir: {out}
steps: 4
base:
  model: {{nets: {{netG: unet, unet_depth: 6, ngf: 8, ndf: 8}}}}
  data: {{train: [{shared_data}/color/train/neon], val: [], load_size: null, crop_size: 64}}
  optim: {{batch_size: 1}}
  train: {{device: cpu, log_every: 1, save_every: 2, val_every: 1000000, sample_every: 0}}
evaluate:
  data: [{shared_data}/color/val/neon]
  max_images: 2
  samples: 1
  device: cpu
  download: false
methods:
  pix2pix:
    config: {ROOT}/configs/pix2pix.yaml
    variants: {{rgb: {{}}, lab: {{model.color_mode: lab}}}}
""")
    return spec


def test_killed_study_finishes_with_the_same_table(shared_data, tmp_path):
    whole = tmp_path / "whole"
    run(aerocolor("study", str(study_yaml(shared_data, whole)), "--quiet"))
    out = tmp_path / "out"
    spec = study_yaml(shared_data, out)
    # killed in the middle of the second run (its checkpoint at step 2 of 4, or evaluating)
    kill_when(aerocolor("study", str(spec), "--quiet"),
              lambda: (out / "runs/pix2pix-lab/last.pt").is_file())
    assert (out / "runs/pix2pix-rgb/evaluation.json").is_file()
    assert not (out / "results.csv").exists()
    rerun = run(aerocolor("study", str(spec), "--quiet"))
    assert "pix2pix-rgb: finished earlier, kept" in rerun.stdout
    for name in ("results.csv", "results.md"):
        assert (out / name).read_text() == (whole / name).read_text(), name


def test_journal_keeps_complete_records_and_drops_other_work(tmp_path):
    out = tmp_path / "x_color.tif"
    key = {"options": {"tile": 512}, "model_sha256": "ab"}
    blocks = [np.arange(12, dtype=np.uint8).reshape(3, 2, 2) + k for k in range(3)]
    with RowJournal(out, key) as j:
        assert j.blocks_done == 0 and not j.restarted
        for k, b in enumerate(blocks):
            j.append(10 * k, [b, b[0]])
        with pytest.raises(OutputError, match="another process is writing this output"), RowJournal(out, key):
            pass
    with open(tmp_path / ".x_color.tif.partial", "ab") as f:
        f.write(RECORD.pack(MAGIC, 30, 1000, 1, 0) + b"torn")  # a record cut short by a kill
    with RowJournal(out, key) as j:
        got = list(j.records())
        assert [top for top, _ in got] == [0, 10, 20]
        assert all((a[0] == b).all() and (a[1] == b[0]).all() for (_, a), b in zip(got, blocks, strict=True))
        j.append(30, [blocks[0]])  # appended after the cut, readable again
    with RowJournal(out, key) as j:
        assert j.blocks_done == 4
    with RowJournal(out, {**key, "options": {"tile": 256}}) as j:
        assert j.restarted and j.blocks_done == 0
        j.discard()
    assert hidden(tmp_path) == []


def test_raster_job_key_follows_the_tile_cut(shared_data, tmp_path):
    from aerocolor.infer import load_colorizer
    from aerocolor.infer.raster import RasterOptions, job_key

    colorizer = load_colorizer(None, "cpu", "torch")
    src = next((shared_data / "geo").glob("*.tif"))
    key = job_key(colorizer, src, RasterOptions(), None)
    colorizer.cut_tile = None  # another tiling of the same raster: a journal must not mix the two
    assert job_key(colorizer, src, RasterOptions(), None) != key


def test_orphaned_temps_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "a.png"
    script = ("import sys,time;from aerocolor.imageio import atomic_write;"
              "atomic_write(sys.argv[1], lambda tmp: (open(tmp,'w').write('x'), open(tmp + '.aux', 'w'),"
              " print('writing', flush=True), time.sleep(600)))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], env=ENV, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        live = hidden(tmp_path)
        assert len(live) == 2 and all(".tmp-" in n for n in live)
        assert remove_orphaned_temps(tmp_path) == []  # its writer still holds the lock
        assert hidden(tmp_path) == live
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert [p.name for p in remove_orphaned_temps(tmp_path)] == live
    assert not any(tmp_path.iterdir())
    atomic_write(target, lambda tmp: Path(tmp).write_text("done"))
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_blocks_from_a_later_tile_row_equal_the_whole_run(tiny_checkpoint, shared_data):
    torch.set_num_threads(1)
    colorizer = load_colorizer(tiny_checkpoint, "cpu")
    with rasterio.open(shared_data / "geo/town_rgbn_5m.tif") as src:
        gray = src.read(1).astype(np.float32) / 255
    h, w = gray.shape

    def read(t, lft, hh, ww):
        return gray[t:t + hh, lft:lft + ww]

    calls = []

    def logged(*window):
        calls.append(window)
        return read(*window)

    for tile, overlap in ((96, 24), (64, 40)):  # an overlap over half a tile: 3 tile rows reach a row
        whole = list(colorizer.blend_tiles(read, h, w, tile, overlap, batch_size=3))
        assert len(whole) == len(colorizer.plan(h, w, tile, overlap)[0])
        for first in (1, 4, len(whole) - 1):
            calls.clear()
            part = list(colorizer.blend_tiles(logged, h, w, tile, overlap, batch_size=3, first_row=first))
            assert [b[0] for b in part] == [b[0] for b in whole[first:]]
            for (_, g1, r1), (_, g2, r2) in zip(part, whole[first:], strict=True):
                assert torch.equal(g1, g2) and torch.equal(r1, r2)
            reads = colorizer.row_reads(h, w, tile, overlap, first)
            assert calls[-len(reads):] == reads
