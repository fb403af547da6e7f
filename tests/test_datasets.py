import numpy as np
import torch
from PIL import Image

from aerocolor.data.datasets import EpochSampler, PairedColorDataset


def test_crops_are_never_larger_than_the_image_and_padding_is_masked(shared_data):
    ds = PairedColorDataset([str(shared_data / "color/train/aid")], crop_size=256, seed=0)
    s = ds[(0, 0)]
    assert s["rgb"].shape == (3, 256, 256) and s["gray"].shape == (1, 256, 256)
    valid = s["mask"][0]
    assert valid.sum().item() <= 150 * 150  # AID tiles are 150 px: the rest is padding
    assert valid[:150, :150].float().mean() > 0.95 and valid[150:, :].sum() == 0 and valid[:, 150:].sum() == 0


def test_pure_black_nodata_is_masked(tmp_path):
    img = np.full((64, 64, 3), 120, np.uint8)
    img[:20, :20] = 0  # a black scan corner
    Image.fromarray(img).save(tmp_path / "corner.png")
    ds = PairedColorDataset([str(tmp_path)], crop_size=64, seed=0, flip=False, rotate90=False)
    m = ds[(0, 0)]["mask"][0]
    assert m[:20, :20].sum() == 0 and m[20:, 20:].min() == 1


def test_samples_are_deterministic_and_augmented(shared_data):
    ds = PairedColorDataset([str(shared_data / "color/train/maps")], crop_size=64, seed=1)
    a, b = ds[(0, 3)], ds[(0, 3)]
    assert torch.equal(a["rgb"], b["rgb"])
    assert not torch.equal(ds[(1, 3)]["rgb"], a["rgb"])


def test_epoch_sampler_resumes_mid_epoch_and_splits_ranks():
    full = EpochSampler(10, 2, seed=0)
    it = iter(full)
    first = [next(it) for _ in range(7)]
    resumed = iter(EpochSampler(10, 2, seed=0, start_step=3))
    assert [next(resumed) for _ in range(4)] == first[3:]
    r0 = iter(EpochSampler(10, 1, seed=0, rank=0, world=2))
    r1 = iter(EpochSampler(10, 1, seed=0, rank=1, world=2))
    keys = {next(r0)[0] for _ in range(5)} | {next(r1)[0] for _ in range(5)}
    assert {i for _, i in keys} == set(range(10))
