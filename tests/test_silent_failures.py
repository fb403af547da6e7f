"""Regressions for results that were wrong while the run reported success: concurrent jobs on one
shared model, float rasters with NaN no-data, and dataset splits that shared tiles."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from aerocolor.checkpoint import save_checkpoint
from aerocolor.config import load_config
from aerocolor.errors import AerocolorError, TrainingError
from aerocolor.imageio import read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.methods import get_method


@pytest.fixture(scope="module")
def gray_scenes(shared_data) -> list[np.ndarray]:
    """Four different real scenes, each larger than one tile (so each run pools statistics)."""
    files = sorted((shared_data / "color/val/rsscn7").glob("*.jpg"))[::50][:4]
    return [read_image(f).mean(axis=2).astype(np.float32)[:320, :288] for f in files]


def instance_norm_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = load_config(None, ["model.method=cyclegan", "model.nets.norm=instance", "model.nets.ngf=8",
                             "model.nets.netG=resnet_6blocks"])
    method = get_method("cyclegan")(cfg.model, training=False)
    path = tmp_path / "inst.pt"
    save_checkpoint(path, {"config": cfg.model_dump(mode="json"),
                           "nets": method.nets_state(method.inference_nets)})
    return path


def concurrent_results(colorizer, scenes: list[np.ndarray], rounds: int = 3) -> list[list[np.ndarray]]:
    """Each scene colorized by its own thread, all starting together, ``rounds`` times."""
    results: list[list[np.ndarray]] = [[] for _ in scenes]
    errors: list[BaseException] = []
    for _ in range(rounds):
        start = threading.Barrier(len(scenes))

        def work(i: int, start: threading.Barrier = start) -> None:
            try:
                start.wait()
                results[i].append(colorizer.colorize(scenes[i], tile=128, overlap=32, batch_size=1))
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(scenes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("model", ["instance_norm", "bundled"])
def test_concurrent_jobs_on_one_model_equal_their_solo_results(model, gray_scenes, tmp_path):
    path = instance_norm_model(tmp_path) if model == "instance_norm" else default_model_path()
    colorizer = load_colorizer(path, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more interleaving between the threads
    try:
        solo = [colorizer.colorize(g, tile=128, overlap=32, batch_size=1) for g in gray_scenes]
        together = concurrent_results(colorizer, gray_scenes)
    finally:
        torch.set_num_threads(threads)
    assert any(np.abs(solo[0] - s).mean() > 0.01 for s in solo[1:])  # the scenes really differ
    for i, runs in enumerate(together):
        for out in runs:
            assert np.array_equal(out, solo[i]), f"scene {i}: max diff {np.abs(out - solo[i]).max():.3g}"


def nan_float_tiff(path: Path, gray: np.ndarray, georeferenced: bool = False) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    data = gray.astype(np.float32) * 1000.0  # a float range, not [0, 1]
    data[:40, :] = np.nan
    profile = {"driver": "GTiff", "height": data.shape[0], "width": data.shape[1], "count": 1,
               "dtype": "float32"}
    if georeferenced:
        profile |= {"crs": "EPSG:32617", "transform": from_origin(400000, 3300000, 1.0, 1.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def test_float_tiff_with_nan_nodata_reads_as_finite_image(gray_scenes, tmp_path):
    gray = gray_scenes[0]
    img = read_image(nan_float_tiff(tmp_path / "nan.tif", gray))
    assert np.isfinite(img).all()
    assert np.all(img[:40] == 0)  # no-data: black, which datasets mask out
    valid = img[40:]
    scale = gray[40:].max()
    assert np.allclose(valid, gray[40:] / scale, atol=1e-5)  # scaled by the finite maximum


def test_all_nan_tiff_is_a_clear_error(tmp_path):
    import rasterio

    path = tmp_path / "empty.tif"
    with rasterio.open(path, "w", driver="GTiff", height=8, width=8, count=1, dtype="float32") as dst:
        dst.write(np.full((8, 8), np.nan, np.float32), 1)
    with pytest.raises(AerocolorError, match="no valid pixels"):
        read_image(path)


def test_colorize_float_raster_with_nan_nodata_gives_colour_not_black(gray_scenes, tmp_path):
    import rasterio

    src = nan_float_tiff(tmp_path / "scan.tif", gray_scenes[1], georeferenced=True)
    res = run_cli("colorize", src, "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "out" / "scan_color.tif") as dst:
        colour, mask = dst.read(), dst.dataset_mask()
    assert mask[:40].max() == 0 and mask[40:].min() == 255  # NaN rows are no-data in the output
    assert colour[:, 40:].mean() > 40  # the valid part is colorized, not black


def test_training_on_nan_tiffs_has_finite_losses(gray_scenes, shared_data, tmp_path):
    import rasterio
    from conftest import tiny_overrides

    from aerocolor.train import train

    folder = tmp_path / "data"
    folder.mkdir()
    for i, g in enumerate(gray_scenes[:2]):
        rgb = np.repeat(g[:, :, None], 3, axis=2) * np.array([0.9, 1.0, 0.8], np.float32)
        with rasterio.open(folder / f"s{i}.tif", "w", driver="GTiff", height=rgb.shape[0],
                           width=rgb.shape[1], count=3, dtype="float32") as dst:
            data = np.moveaxis(rgb, -1, 0).copy()
            data[:, :100] = np.nan
            dst.write(data)
    cfg = load_config(None, tiny_overrides(tmp_path / "run", 4, **{
        "data.train": f"[{str(folder)!r}]", "optim.batch_size": 2, "train.log_every": 1}))
    train(cfg, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "losses.csv")))
    assert rows and all(np.isfinite(float(v)) for r in rows for k, v in r.items() if k != "step")


def test_a_nan_loss_stops_training_naming_step_and_files(shared_data):
    from aerocolor.data.datasets import EpochSampler, PairedColorDataset
    from aerocolor.train import check_finite

    dataset = PairedColorDataset([str(shared_data / "color/val/neon")], 64)
    sampler = EpochSampler(len(dataset), 2, seed=0)
    check_finite({"G_L1": torch.tensor(0.5)}, 7, dataset, sampler)  # finite: nothing happens
    with pytest.raises(TrainingError) as err:
        check_finite({"G_L1": torch.tensor(float("nan")), "D": torch.tensor(0.1)}, 7, dataset, sampler)
    msg = str(err.value)
    expected = {dataset.files[i].name for _, i in sampler.keys_at(6)}
    assert "step 7" in msg and "G_L1" in msg and "D," not in msg
    assert all(name in msg for name in expected)
    assert sampler.keys_at(6) == list(iter(EpochSampler(len(dataset), 2, seed=0, start_step=6)).__next__())


def tile_names(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


def test_prepare_refuses_a_prepared_output_and_overwrite_leaves_no_tile_in_two_splits(town_tiles, tmp_path):
    out = tmp_path / "ds"
    assert run_cli("prepare", "--color", town_tiles, "-o", out, "--block", "2").exit_code == 0
    res = run_cli("prepare", "--color", town_tiles, "-o", out, "--block", "1")
    assert isinstance(res.exception, AerocolorError)
    assert "already holds a prepared dataset" in str(res.exception) and "--overwrite" in str(res.exception)
    res = run_cli("prepare", "--color", town_tiles, "-o", out, "--block", "1", "--overwrite")
    assert res.exit_code == 0, res.output
    splits = {s: tile_names(out / "paired" / s / "color") for s in ("train", "val", "test")}
    assert all(splits.values())
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"]
                or splits["val"] & splits["test"])
    rows = list(csv.DictReader(open(out / "splits.csv")))
    assert len(rows) == sum(map(len, splits.values()))


def test_prepare_warns_when_a_split_is_empty(town_tiles, tmp_path):
    res = run_cli("prepare", "--color", town_tiles, "-o", tmp_path / "ds", "--block", "64")
    assert res.exit_code == 0, res.output
    assert "warning: color: no tiles in" in res.output and "smaller --block" in res.output
