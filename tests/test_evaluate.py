"""Evaluation: paired colour metrics on real images, FID/KID/IS on the standard FID network."""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import Terminal
from typer.testing import CliRunner

from aerocolor.cli import app
from aerocolor.color import gray_from_rgb, to_tensor
from aerocolor.data.datasets import nodata_mask
from aerocolor.errors import AerocolorError
from aerocolor.evaluate import (
    EvalOptions,
    Scorer,
    cache_key,
    evaluate_model,
    inception_score,
    kernel_inception_distance,
    load_classifier,
    paired_metrics,
    pick_images,
    reference_features,
)
from aerocolor.fid import fid_features, frechet_distance, prepare
from aerocolor.imageio import as_rgb, read_image


@pytest.fixture(scope="module")
def features(shared_data):
    """Pool3 features of 16 real colour photos and 8 real old photos."""
    colour = pick_images([str(shared_data / "color/val/aid")], 16)
    old = pick_images([str(shared_data / "old/val/gsi1960s")], 8)
    return {
        "colour": fid_features((read_image(f) for f in colour), batch_size=8),
        "old": fid_features((read_image(f) for f in old), batch_size=8),
    }


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root, as pytorch-fid computes it."""
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


def test_features_are_pool3_of_the_standard_network(features):
    assert features["colour"].shape == (16, 2048)
    # pool3 follows a ReLU and average pooling: non-negative
    assert features["colour"].min() >= 0


@pytest.mark.parametrize("dims", [8, 256])
def test_fid_matches_a_direct_scipy_computation(features, dims):
    """Both code paths (covariances when sets outnumber dimensions, else the small N1 x N2
    problem) against scipy's sqrtm on the same real features; leading feature dimensions keep
    scipy's D x D square root fast."""
    a, b = features["colour"][:, :dims], features["old"][:, :dims]
    ours, ref = frechet_distance(a, b), scipy_frechet(a, b)
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-6)
    assert ours > 0.1


def test_fid_of_a_set_against_itself_is_zero(features):
    f = features["colour"]
    assert abs(frechet_distance(f, f)) < 1e-6
    assert frechet_distance(f, features["old"]) > 50


def test_kid_is_unbiased_near_zero_for_two_halves_of_one_set(features):
    f = features["colour"]
    halves, _ = kernel_inception_distance(f[::2], f[1::2])
    cross, _ = kernel_inception_distance(f, features["old"])
    # the biased estimate (diagonal kept) of the same halves sits well above zero
    d = f.shape[1]
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    biased = k(f[::2], f[::2]).mean() + k(f[1::2], f[1::2]).mean() - 2 * k(f[::2], f[1::2]).mean()
    assert abs(halves) < 0.1 * cross
    assert abs(halves) < 0.5 * biased


def test_kid_std_is_not_a_number_when_one_subset_holds_every_image(features):
    from aerocolor.evaluate import report_markdown

    f, old = features["colour"], features["old"]
    _, one_subset = kernel_inception_distance(f[:8], old)  # both sets fit one subset
    _, spread = kernel_inception_distance(f, old, subsets=10, subset_size=6)
    assert math.isnan(one_subset)
    assert spread > 0
    report = {"checkpoint": "m.pt", "method": "pix2pix", "notes": [],
              "old": {"images": 8, "fid": 1.0, "kid_mean": 0.5, "kid_std": one_subset,
                      "is_mean": 1.0, "is_std": 0.0, "is_max": 1.0}}
    assert "| KID std | n/a |" in report_markdown(report)


def test_preprocessing_is_8_bit_299_pixels_in_the_tensorflow_range():
    x = torch.tensor([0.0, 1.0, 0.5, 0.2]).view(1, 1, 2, 2)
    y = prepare(x)
    assert y.shape == (1, 3, 299, 299)
    assert y.min().item() == -1.0 and y.max().item() == pytest.approx(127 / 128)
    mid = torch.full((1, 3, 299, 299), 0.5)
    assert torch.equal(prepare(mid), torch.zeros_like(mid))


def test_gray_inputs_score_worse_than_the_truth_on_every_paired_metric(shared_data):
    files = pick_images([str(shared_data / "color/val/aid"), str(shared_data / "color/val/neon")],
                        6)
    for f in files:
        truth = as_rgb(read_image(f))
        gray = as_rgb(gray_from_rgb(to_tensor(truth))[0, 0].numpy())
        mask = nodata_mask(truth)
        g, t = paired_metrics(gray, truth, mask), paired_metrics(truth, truth, mask)
        assert g["psnr"] < t["psnr"] and g["ssim"] < t["ssim"], f
        assert g["ciede2000"] > t["ciede2000"] == 0, f
        assert t["ab_hist_distance"] == pytest.approx(0, abs=1e-9)
        assert g["ab_hist_distance"] > 0.05, f
        gap = abs(g["colorfulness"] - g["colorfulness_truth"])
        assert gap > abs(t["colorfulness"] - t["colorfulness_truth"]) == 0, f
        assert g["colorfulness"] == pytest.approx(0, abs=1e-3)


def test_pure_black_nodata_pixels_are_left_out(shared_data):
    truth = as_rgb(read_image(pick_images([str(shared_data / "color/val/neon")], 1)[0]))
    truth[:, :120] = 0  # a no-data border, as on scans and tile corners
    pred = truth.copy()
    pred[:, :120] = np.random.default_rng(0).random((truth.shape[0], 120, 3))
    m = paired_metrics(pred, truth, nodata_mask(truth))
    assert math.isinf(m["psnr"]) and m["ciede2000"] == 0 and m["ab_hist_distance"] == 0
    assert m["colorfulness"] == pytest.approx(m["colorfulness_truth"])
    assert m["ssim"] > 0.95  # only windows straddling the border see the noise
    everywhere = paired_metrics(pred, truth, np.ones(truth.shape[:2]))
    assert everywhere["ciede2000"] > 1


def test_inception_score_of_known_distributions():
    uniform = np.zeros((40, 1008))
    assert inception_score(uniform, splits=4) == pytest.approx((1.0, 0.0, 1.0))
    confident = np.full((30, 1008), -50.0)
    confident[np.arange(30), np.arange(30)] = 50.0  # 30 images, 30 classes, each certain
    mean, std, best = inception_score(confident, splits=1)
    assert mean == pytest.approx(30, rel=1e-6) and best == mean and std == 0


def test_inception_score_from_a_weights_file_and_a_clear_note_without(features, tmp_path):
    classifier = torch.randn(1008, 2048) * 0.05
    path = tmp_path / "inception.pth"
    torch.save({"fc.weight": classifier, "fc.bias": torch.zeros(1008)}, path)
    matrix, source = load_classifier(str(path), download=False)
    assert np.allclose(matrix, classifier.double().numpy()) and source == str(path)
    scorer = Scorer("cpu", 8, "", matrix, is_splits=2)
    scores = scorer.compare(features["old"], features["colour"])
    assert scores["is_mean"] > 1 and scores["is_max"] >= scores["is_mean"]

    none, note = load_classifier(None, download=False)
    assert none is None and "Inception Score not computed" in note and "--inception-weights" in note
    bare = Scorer("cpu", 8, "", None, [note]).compare(features["old"], features["colour"])
    assert math.isnan(bare["is_mean"]) and bare["fid"] > 0

    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(AerocolorError, match="no Inception classifier"):
        load_classifier(str(tmp_path / "other.pth"), download=False)


def test_evaluate_command_writes_json_and_markdown(tiny_checkpoint, shared_data, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "evaluate", str(tiny_checkpoint), "--data", str(shared_data / "color/val/aid"),
        "--old", str(shared_data / "old/val/gsi1960s"), "--max-images", "3", "--samples", "1",
        "--device", "cpu", "--no-download", "--cache", str(tmp_path / "cache"), "-o", str(out),
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())
    gray, old = report["gray"], report["old"]
    assert gray["images"] == old["images"] == 3
    assert gray["fid"] > 0 and old["fid"] > 0 and gray["is_mean"] is None
    assert gray["kid_std"] is None  # 3 images: one KID subset, no spread to report
    assert 0 < gray["ssim"] <= 1 and gray["ciede2000"] > 0
    assert gray["gray_input"]["colorfulness"] == pytest.approx(0, abs=1e-3)
    assert any("Inception Score not computed" in n for n in report["notes"])
    md = (out / "evaluation.md").read_text()
    assert "| FID |" in md and "| CIEDE2000 |" in md and "gray input" in md
    assert "| KID std | n/a |" in md
    assert [p.name for p in sorted((out / "samples").iterdir())] == ["gray_00.png", "old_00.png"]

    # the truths are also the old photos' reference: one cached feature set, found again
    (cached,) = (tmp_path / "cache").glob("features-*.npy")
    stamp = cached.stat().st_mtime_ns
    files = pick_images([str(shared_data / "color/val/aid")], 3)
    scorer = Scorer.from_options(EvalOptions(device="cpu", download=False))
    assert np.array_equal(reference_features(files, scorer, tmp_path / "cache"), np.load(cached))
    assert cached.stat().st_mtime_ns == stamp
    assert cache_key(files[:2], scorer.network) != cache_key(files, scorer.network)


def test_nothing_to_evaluate_is_a_clear_error(tiny_checkpoint):
    from aerocolor.infer import load_colorizer

    with pytest.raises(AerocolorError, match="nothing to evaluate"):
        evaluate_model(load_colorizer(tiny_checkpoint, "cpu"), None, None)


def test_evaluate_shows_progress_on_a_terminal_only(tiny_checkpoint, shared_data, tmp_path, monkeypatch):
    from aerocolor.infer import load_colorizer

    colorizer = load_colorizer(tiny_checkpoint, "cpu")
    data = [str(shared_data / "color/val/aid")]
    for i, (shown, stream) in enumerate(((True, Terminal()), (False, Terminal()), (True, io.StringIO()))):
        monkeypatch.setattr(sys, "stderr", stream)
        # a fresh feature cache each time, so the truths' feature pass runs too
        opts = EvalOptions(max_images=2, device="cpu", download=False, cache_dir=str(tmp_path / f"cache{i}"),
                           progress=shown)
        evaluate_model(colorizer, data, opts=opts)
        text = stream.getvalue()
        drawn = shown and isinstance(stream, Terminal)
        assert ("colorize gray versions" in text) == drawn
        assert ("FID features of the truth" in text) == drawn
        assert ("/2 [" in text) == drawn  # the bar with its total (updates are drawn by time)
