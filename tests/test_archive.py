"""Archive jobs: Ray and local engines agree byte for byte, a killed Ray worker costs only its
file, the manifest skips verified outputs and redoes broken ones, --consistent brings the
colours of overlapping frames together, and the mosaic VRT and STAC items read back."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from aerocolor.archive import ArchiveOptions, run_archive
from aerocolor.archive.catalog import PROCESSING_EXT, PROJECTION_EXT
from aerocolor.archive.job import group_key
from aerocolor.archive.manifest import MANIFEST_NAME, Manifest, file_sha256
from aerocolor.archive.quality import cut_frames, overlap_difference
from aerocolor.archive.worker import WorkSpec
from aerocolor.cli import app
from aerocolor.errors import AerocolorError
from aerocolor.infer.raster import RasterOptions

# NAIP's 4th band is tagged alpha beside a nodata value; GDAL says which wins, every read
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NodataShadowWarning")
OPTS = RasterOptions(tile=64, overlap=16)
NAIP = "geo/naip_series/naip_nd_20160816_rgbn_5m.tif"


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (2 CPUs); engines use it as it is."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def frames(shared_data: Path, tmp_path_factory) -> list[Path]:
    """Six 96 px georeferenced frames of a real NAIP raster (4 bands, nodata 0) overlapping by
    24 px: 3 columns by 2 rows."""
    out = tmp_path_factory.mktemp("frames")
    with rasterio.open(shared_data / NAIP) as src:
        window = rasterio.windows.Window(300, 200, 240, 168)
        profile = {**src.profile, "width": 240, "height": 168, "transform": src.window_transform(window)}
        with rasterio.open(out / "naip.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    return cut_frames(out / "naip.tif", out / "frames", 96, 24)


@pytest.fixture(scope="module")
def own_stats_job(frames, tmp_path_factory) -> tuple[Path, object]:
    """The frames colorized by the local engine, each with its own statistics: (out, summary)."""
    out = tmp_path_factory.mktemp("own")
    return out, run_archive(frames, spec(out), ArchiveOptions(progress=False))


def outputs_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_color.tif"))}


def spec(out: Path) -> WorkSpec:
    # one backend everywhere: with "auto", processes with other thread counts (Ray workers run one
    # thread) measure separately and may pick torch here and onnxruntime there, whose outputs
    # differ by rounding
    return WorkSpec(out_dir=out, device="cpu", backend="torch", raster=OPTS)


def test_ray_engine_writes_the_same_bytes_as_colorize(frames, ray_cluster, tmp_path):
    res = CliRunner().invoke(app, ["colorize", *map(str, frames[:4]), "-o", str(tmp_path / "plain"),
                                   "--tile", "64", "--overlap", "16", "--device", "cpu", "--backend", "torch",
                                   "-q"])
    assert res.exit_code == 0, res.output
    summary = run_archive(frames[:4], spec(tmp_path / "ray"), ArchiveOptions(engine="ray", workers=2, progress=False))
    assert (summary.engine, summary.workers, len(summary.done), summary.failed) == ("ray", 2, 4, {})
    plain, ray_out = outputs_of(tmp_path / "plain"), outputs_of(tmp_path / "ray")
    assert len(plain) == 4 and plain == ray_out
    records = Manifest(tmp_path / "ray").latest()
    pids = {r["pid"] for r in records.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes did the work
    for r in records.values():
        (o,) = r["outputs"]
        assert o["sha256"] == file_sha256(tmp_path / "ray" / o["path"])


def test_consistent_on_ray_matches_local(frames, ray_cluster, tmp_path):
    """Pass 1 (sampling, pooling) on Ray workers gives the statistics the local engine gets."""
    shared = ArchiveOptions(consistent=True, group_by="all", progress=False)
    run_archive(frames[:3], spec(tmp_path / "local"), shared)
    run_archive(frames[:3], spec(tmp_path / "ray"), replace(shared, engine="ray", workers=2))
    local, ray_out = outputs_of(tmp_path / "local"), outputs_of(tmp_path / "ray")
    assert len(local) == 3 and local == ray_out


def test_killed_ray_worker_costs_only_its_file(frames, ray_cluster, tmp_path):
    killed: list[int] = []

    def kill_first_worker(record: dict) -> None:
        if not killed:  # its next file is already queued on it: that one is lost mid-way
            killed.append(record["pid"])
            os.kill(record["pid"], signal.SIGKILL)

    out = tmp_path / "out"
    summary = run_archive(frames, spec(out), ArchiveOptions(engine="ray", workers=2, progress=False),
                          on_record=kill_first_worker)
    assert killed and summary.lost >= 1
    assert (len(summary.done), summary.failed) == (len(frames), {})
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no half-written file
    records = Manifest(out).latest()
    assert len(records) == len(frames) and {r["status"] for r in records.values()} == {"done"}
    for r in records.values():
        with rasterio.open(out / r["outputs"][0]["path"]) as src:
            assert src.read().shape == (3, 96, 96)


def test_rerun_skips_verified_outputs_and_redoes_broken_ones(frames, tmp_path):
    args = ["colorize", *map(str, frames[:3]), "-o", str(tmp_path), "--archive", "--tile", "96",
            "--overlap", "24", "--device", "cpu", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "3 done, 0 skipped" in res.output
    first = outputs_of(tmp_path)
    names = sorted(first)
    broken = tmp_path / names[0]
    broken.write_bytes(broken.read_bytes()[:1000])  # a truncated output
    (tmp_path / names[1]).unlink()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2 done, 1 skipped" in res.output
    assert outputs_of(tmp_path) == first
    lines = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(ln)["status"] == "done" for ln in lines)
    res = CliRunner().invoke(app, args + ["--overlap", "8"])  # other options: nothing is verified
    assert "3 done, 0 skipped" in res.output


def test_failed_input_is_reported_and_exit_is_1(frames, tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    res = CliRunner().invoke(app, ["colorize", str(frames[0]), str(bad), "-o", str(tmp_path / "out"),
                                   "--archive", "--tile", "64", "--overlap", "16", "--device", "cpu", "-q"])
    assert res.exit_code == 1
    assert "1 done, 0 skipped (verified by the manifest), 1 failed of 2 inputs" in res.output
    assert f"failed: {bad}: " in res.output and "not a raster GDAL can read" in res.output


def test_consistent_brings_frame_colours_together(frames, own_stats_job, tmp_path):
    own_out, own = own_stats_job
    shared = run_archive(frames, spec(tmp_path / "shared"),
                         ArchiveOptions(consistent=True, group_by="all", progress=False))
    assert not own.failed and not shared.failed
    d_own, pairs = overlap_difference(sorted(own_out.glob("*_color.tif")))
    d_shared, _ = overlap_difference(sorted((tmp_path / "shared").glob("*_color.tif")))
    assert pairs == 11  # 3 x 2 frames: 7 side by side, 4 diagonal neighbours
    assert d_shared * 3 < d_own, (d_own, d_shared)  # measured: 4.69 against 0.80
    lines = (tmp_path / "shared" / MANIFEST_NAME).read_text().splitlines()
    assert len({json.loads(ln)["group"]["signature"] for ln in lines}) == 1


def test_consistent_shares_the_stretch_of_16_bit_frames(frames, tmp_path):
    """Frames deeper than 8 bits are stretched by percentiles: per frame on their own, by the
    group's with --consistent."""
    deep = tmp_path / "deep"
    deep.mkdir()
    for f in frames[:2]:  # two side-by-side neighbours, as 16-bit scans of a narrow range
        with rasterio.open(f) as src:
            data = src.read().astype(np.uint16) * 40 + 1000
            with rasterio.open(deep / f.name, "w", **{**src.profile, "dtype": "uint16", "nodata": None}) as dst:
                dst.write(data)
    deep_frames = sorted(deep.glob("*.tif"))
    run_archive(deep_frames, spec(tmp_path / "own"), ArchiveOptions(progress=False))
    run_archive(deep_frames, spec(tmp_path / "shared"), ArchiveOptions(consistent=True, progress=False))
    records = Manifest(tmp_path / "shared").latest().values()
    assert len({tuple(r["stretch"]) for r in records}) == 1 and all(r["status"] == "done" for r in records)
    assert not any("stretch" in r for r in Manifest(tmp_path / "own").latest().values())
    d_own, pairs = overlap_difference(sorted((tmp_path / "own").glob("*_color.tif")))
    d_shared, _ = overlap_difference(sorted((tmp_path / "shared").glob("*_color.tif")))
    assert pairs == 1 and d_shared * 1.5 < d_own, (d_own, d_shared)  # measured: 1.98 against 0.87


def test_mosaic_vrt_and_stac_items(frames, own_stats_job):
    import pystac
    import pystac.validation

    tmp_path, summary = own_stats_job
    assert summary.mosaic == tmp_path / "mosaic.vrt" and len(summary.stac) == len(frames)
    bounds = []
    for f in frames:
        with rasterio.open(f) as src:
            bounds.append(src.bounds)
            crs = src.crs
    last = tmp_path / f"{frames[-1].stem}_color.tif"
    with rasterio.open(summary.mosaic) as vrt, rasterio.open(last) as src:
        assert vrt.crs == crs and vrt.count == 3 and (vrt.width, vrt.height) == (240, 168)
        assert np.allclose(vrt.bounds, (min(b.left for b in bounds), min(b.bottom for b in bounds),
                                        max(b.right for b in bounds), max(b.top for b in bounds)))
        window = rasterio.windows.from_bounds(*src.bounds, transform=vrt.transform)
        assert np.array_equal(vrt.read(window=window.round_offsets().round_lengths()), src.read())
    item = pystac.Item.from_file(str(tmp_path / "stac" / f"{last.stem}.json"))
    assert item.id == last.stem and item.datetime is not None
    assert item.properties["aerocolor:model"]["sha256"] == file_sha256(item.properties["aerocolor:model"]["file"])
    assert item.properties["aerocolor:model"]["method"] == "pix2pix"
    assert item.properties["aerocolor:model"]["version"]["step"] > 0
    assert item.properties["processing:software"]["aerocolor"]
    lon, lat = np.mean(item.geometry["coordinates"][0][:4], axis=0)
    assert -104.5 < lon < -96 and 45.9 < lat < 49.1  # North Dakota
    assert item.bbox[0] < lon < item.bbox[2]
    asset = item.assets["data"]
    assert (tmp_path / "stac" / asset.href).resolve() == last.resolve()
    assert [lk.target for lk in item.links if lk.rel == "derived_from"] == [str(frames[-1].resolve())]
    catalog = pystac.Catalog.from_file(str(tmp_path / "stac" / "catalog.json"))
    assert len(list(catalog.get_items())) == len(frames)
    # the core STAC schemas ship with pystac; the extensions' schemas would need the network
    for name in (f"{last.stem}.json", "catalog.json"):
        data = json.loads((tmp_path / "stac" / name).read_text())
        assert set(data.get("stac_extensions", [])) <= {PROCESSING_EXT, PROJECTION_EXT}
        pystac.validation.validate_dict({**data, "stac_extensions": []})


def test_group_keys(tmp_path):
    p = Path("/archive/flight_12/frame_0003.tif")
    assert group_key(p, "folder") == "/archive/flight_12"
    assert group_key(p, "all") == "all"
    assert group_key(p, r"flight_(\d+)") == "12"
    assert group_key(p, r"frame_\d") == "frame_0"
    with pytest.raises(AerocolorError, match="does not match"):
        group_key(p, r"roll_\d+")
    with pytest.raises(AerocolorError, match="not a regular expression"):
        group_key(p, "(")


def test_unknown_engine_is_one_line(frames, tmp_path):
    from aerocolor.cli import main

    with pytest.raises(SystemExit) as e:
        main(["colorize", str(frames[0]), "-o", str(tmp_path), "--engine", "spark"])
    assert e.value.code == 2
