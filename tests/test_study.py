"""The study runner: the shipped grids, the smoke study end to end on real images, resuming."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest
import torch
from conftest import ROOT

from aerocolor.errors import ConfigError
from aerocolor.study import TABLE_COLUMNS, load_study, run_study, study_runs
from aerocolor.train import train

STUDIES = ROOT / "configs" / "studies"
PAPER_GRID = [
    "pix2pix-default", "pix2pix-lab", "pix2pix-ngf128_ndf32", "pix2pix-resnet",
    "cyclegan-default", "cyclegan-ngf128_ndf32",
    "cut-lsgan", "cut-vanilla", "cut-wgangp", "cut-ngf128_ndf32",
    "fastcut-lsgan", "fastcut-vanilla", "fastcut-wgangp", "fastcut-ngf128_ndf32",
    "bicyclegan-z_input", "bicyclegan-z_all", "bicyclegan-z_middle",
]
# the smoke test keeps FID to 2 images per set (the fewest FID and KID are defined for)
SMOKE_SETTINGS = ["evaluate.max_images=2"]


def test_paper_grid_is_the_research_grid(monkeypatch):
    monkeypatch.chdir(ROOT)
    runs = study_runs(load_study(STUDIES / "paper.yaml"))
    assert list(runs) == PAPER_GRID
    assert runs["pix2pix-lab"].model.color_mode == "lab"
    assert runs["pix2pix-resnet"].model.nets.netG == "resnet_9blocks"
    assert (runs["cyclegan-ngf128_ndf32"].model.nets.ngf, runs["cyclegan-ngf128_ndf32"].model.nets.ndf) == (128, 32)
    assert [runs[f"cut-{g}"].model.gan_mode for g in ("lsgan", "vanilla", "wgangp")] == ["lsgan", "vanilla", "wgangp"]
    assert runs["fastcut-lsgan"].model.options["lambda_NCE"] == 10.0
    assert [runs[f"bicyclegan-z_{w}"].model.options["where_add"] for w in ("input", "all", "middle")] == [
        "input", "all", "middle"]
    assert all(r.data.train_a for r in runs.values())
    # the research budget: each preset's epochs, no step cap
    assert runs["cut-lsgan"].optim.max_steps is None and runs["cut-lsgan"].optim.n_epochs == 200


def test_hybrid_study_compares_equal_budgets_from_one_start(monkeypatch):
    monkeypatch.chdir(ROOT)
    runs = study_runs(load_study(STUDIES / "hybrid.yaml"))
    assert list(runs) == ["pix2pix-balanced", "pix2pix-unbalanced", "hybrid-adapt", "hybrid-stats_only"]
    assert {r.optim.max_steps for r in runs.values()} == {300}
    assert {r.train.init_from for r in runs.values()} == {"src/aerocolor/models/default.pt"}
    assert runs["pix2pix-unbalanced"].data.balance == "none" and runs["hybrid-adapt"].data.balance == "source_class"
    assert runs["hybrid-stats_only"].model.options["lambda_adapt"] == 0.0
    assert runs["hybrid-adapt"].model.options["lambda_stats"] == 20.0


def test_default_model_study_varies_only_the_scene_head_and_adaptation(monkeypatch):
    monkeypatch.chdir(ROOT)
    runs = study_runs(load_study(STUDIES / "default_model_v4.yaml"))
    assert list(runs) == ["pix2pix-broad", "pix2pix-scene", "hybrid-scene"]
    budgets = {(r.optim.max_steps, r.optim.batch_size, r.data.crop_size, r.optim.lr_G, r.train.init_from,
                r.data.balance, r.data.balance_strength) for r in runs.values()}
    assert len(budgets) == 1  # equal budgets from one start on the same data
    opts = {n: r.model.options for n, r in runs.items()}
    assert "lambda_scene" not in opts["pix2pix-broad"] and opts["pix2pix-scene"]["lambda_scene"] > 0
    assert opts["hybrid-scene"]["lambda_scene"] == opts["pix2pix-scene"]["lambda_scene"]
    assert opts["hybrid-scene"]["lambda_stats"] > 0 and runs["hybrid-scene"].data.train_a


def test_study_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: {pix2pix: {variants: {a: {}}}}\nbudget: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid study.*budget"):
        load_study(bad)
    bad.write_text("methods: {pix2pox: {variants: {a: {}}}}\n")
    with pytest.raises(ConfigError, match="unknown method 'pix2pox'"):
        study_runs(load_study(bad))


@pytest.fixture(scope="module")
def smoke(shared_data, tmp_path_factory):
    """The smoke study run once, its first run interrupted after one of its two steps."""
    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    out = tmp_path_factory.mktemp("study")
    settings = [f"out_dir={out}", *SMOKE_SETTINGS]
    spec = load_study(STUDIES / "smoke.yaml", settings)
    runs = study_runs(spec)
    first = next(iter(runs))
    train(runs[first], until_step=1, progress=False)
    log: list[str] = []
    paths = run_study(STUDIES / "smoke.yaml", settings, progress=False, log=log.append)
    yield {"out": out, "spec": spec, "runs": runs, "first": first, "paths": paths, "log": log,
           "settings": settings}
    mp.undo()


def test_smoke_study_tables_hold_every_run(smoke):
    out = smoke["out"]
    assert sorted(p.name for p in smoke["paths"]) == ["results.csv", "results.html", "results.md"]
    with (out / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == PAPER_GRID
    for r in rows:
        for key in ("gray-processed FID", "gray-processed KID", "gray-processed CIEDE2000",
                    "gray-processed PSNR", "gray-processed SSIM", "real old photos FID",
                    "real old photos KID"):
            assert math.isfinite(float(r[key])), (r["run"], key)
        assert float(r["gray-processed FID"]) > 0 and 0 < float(r["gray-processed SSIM"]) <= 1
        assert r["gray-processed IS max"] == ""  # no classifier weights: left empty, said in notes
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == len(PAPER_GRID) + 1 and "Inception Score not computed" in md
    html = (out / "results.html").read_text()
    headers = re.findall(r"<th>([^<]+)</th>", html)
    assert headers == [label for cols in TABLE_COLUMNS.values() for label, _ in cols]
    for name in PAPER_GRID:
        run = out / "runs" / name
        assert (run / "losses.png").stat().st_size > 1000
        assert (run / "samples" / "gray_00.png").is_file() and (run / "samples" / "old_00.png").is_file()
        assert f'src="runs/{name}/samples/gray_00.png"' in html
        assert f'src="runs/{name}/losses.png"' in html


def test_interrupted_run_continued_where_it_stopped(smoke):
    run = smoke["out"] / "runs" / smoke["first"]
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == smoke["spec"].steps == 2
    with (run / "losses.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2]  # step 1 from before the interruption, not repeated


def test_finished_runs_are_not_repeated(smoke):
    out = smoke["out"]
    stamps = {n: (out / "runs" / n / "evaluation.json").stat().st_mtime_ns for n in PAPER_GRID}
    log: list[str] = []
    run_study(STUDIES / "smoke.yaml", smoke["settings"], progress=False, log=log.append)
    assert log == [f"{n}: finished earlier, kept" for n in PAPER_GRID]
    assert stamps == {n: (out / "runs" / n / "evaluation.json").stat().st_mtime_ns for n in PAPER_GRID}
    report = json.loads((out / "runs" / PAPER_GRID[0] / "evaluation.json").read_text())
    assert report["config"]["optim"]["max_steps"] == 2


def test_an_edited_study_does_not_mix_old_results(smoke):
    with pytest.raises(ConfigError, match="pix2pix-default: trained with another config"):
        run_study(STUDIES / "smoke.yaml", [*smoke["settings"], "base.optim.lr_G=0.001"],
                  progress=False, log=lambda m: None)


def test_only_runs_the_named_runs_and_names_the_choices(smoke):
    """--only: one run of a study (e.g. as one of several parallel processes); the table then
    holds that run alone, and a name not in the study is refused with the names it has."""
    log: list[str] = []
    run_study(STUDIES / "smoke.yaml", smoke["settings"], progress=False, log=log.append,
              only=[PAPER_GRID[1]])
    assert log == [f"{PAPER_GRID[1]}: finished earlier, kept"]
    with (smoke["out"] / "results.csv").open() as f:
        assert [r["run"] for r in csv.DictReader(f)] == [PAPER_GRID[1]]
    with pytest.raises(ConfigError, match=f"no run named nope: choose from {PAPER_GRID[0]}"):
        run_study(STUDIES / "smoke.yaml", smoke["settings"], progress=False, log=log.append, only=["nope"])
