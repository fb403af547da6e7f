"""The model shipped in the package: it loads, runs on the CPU, and beats the gray baseline."""

import numpy as np
import pytest

from aerocolor.colorize import to_gray
from aerocolor.data.datasets import nodata_mask
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import default_model_path, load_colorizer
from aerocolor.metrics import mean_ciede2000


@pytest.fixture(scope="module")
def bundled():
    path = default_model_path()
    if not path.is_file():
        pytest.fail(f"the bundled model is missing from the package: {path}")
    return load_colorizer(path, "cpu")


def test_bundled_model_is_small_and_self_describing(bundled):
    assert default_model_path().stat().st_size <= 25 * 1024 * 1024
    assert bundled.config.model.method and bundled.mode in ("rgb", "lab")


def test_bundled_model_beats_the_gray_baseline_on_real_validation_images(bundled, shared_data):
    files = []
    for sub in ("aid", "maps", "neon", "rsscn7"):
        items = list_images(shared_data / "color/val" / sub)
        files += items[len(items) // 2::max(1, len(items) // 8)][:3]  # from the report half
    ours, gray_scores = [], []
    for f in files:
        truth = as_rgb(read_image(f))
        gray, mask = to_gray(truth), nodata_mask(truth)
        colour = bundled.colorize(gray)
        assert colour.shape == truth.shape and np.isfinite(colour).all()
        ours.append(mean_ciede2000(colour, truth, mask))
        gray_scores.append(mean_ciede2000(np.repeat(gray[:, :, None], 3, 2), truth, mask))
    assert np.mean(ours) < np.mean(gray_scores), (ours, gray_scores)
