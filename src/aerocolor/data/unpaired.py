"""Unpaired training data: gray old photos (domain A) beside colour photos (domain B)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..color import gray_from_rgb, to_tensor
from ..errors import ConfigError
from ..imageio import as_rgb, list_images, read_image
from .balance import balance_weights, scene_ids
from .datasets import make_ager, random_crop


def gray_image(img: np.ndarray) -> np.ndarray:
    """An old photo as one channel: gray stays gray; a colour scan becomes its neutral gray."""
    return img if img.ndim == 2 else gray_from_rgb(to_tensor(img))[0, 0].numpy()


def _files(folders: list[str], what: str, flag: str) -> list:
    if not folders:
        raise ConfigError(f"no {what}: give {flag} FOLDER")
    files = list_images(folders)
    if not files:
        names = ", ".join(map(str, folders))
        raise ConfigError(f"no images found in {names}: give folders of {what}")
    return files


class UnpairedDataset(Dataset):
    """Gray old photos (A) and colour photos (B) of any number, unpaired.

    Sample ``index`` takes photo ``index % len(A)`` and a colour photo drawn by the generator
    seeded with (seed, epoch, index), so samples are the same after a resume. A sample holds
    ``gray`` and ``mask`` (domain A, one channel), ``b_rgb``, ``b_gray`` (the neutral gray of
    equal L*, aged when ageing is on), ``b_mask`` and ``b_scene`` (the colour photo's scene class,
    as in :class:`~aerocolor.data.datasets.PairedColorDataset`); masks are 0 on no-data and padding.
    """

    def __init__(self, train_a_folders: list[str], train_b_folders: list[str], crop_size: int,
                 seed: int = 0, load_size: int | None = None, flip: bool = True,
                 rotate90: bool = True, age: dict | None = None, balance: str = "none", balance_strength: float = 1.0):
        self.files_a = _files(train_a_folders, "gray old photos (domain A)", "--data-a")
        self.files_b = _files(train_b_folders, "colour photos (domain B)", "--data")
        self.weights_b = balance_weights(self.files_b, train_b_folders, balance, balance_strength)
        self.scene_b, self.scene_names = scene_ids(self.files_b)
        self.weights = None  # the sampler walks domain A uniformly; B is drawn with weights_b
        self.crop_size, self.seed, self.load_size = crop_size, seed, load_size
        self.flip, self.rotate90 = flip, rotate90
        self.ager = make_ager(age)

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def _crop(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return random_crop(img, rng, self.crop_size, self.load_size, self.flip, self.rotate90)

    def _pick(self, key: tuple[int, int]) -> tuple[np.random.Generator, Path, np.ndarray, np.ndarray, int]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        a_file = self.files_a[index % len(self.files_a)]
        a, a_mask = self._crop(gray_image(read_image(a_file)), rng)
        b = (int(rng.integers(len(self.files_b))) if self.weights_b is None
             else int(rng.choice(len(self.files_b), p=self.weights_b)))
        return rng, a_file, a, a_mask, b

    def sources(self, key: tuple[int, int]) -> list[Path]:
        """The files a sample is made from (for error messages)."""
        _, a_file, _, _, b = self._pick(key)
        return [a_file, self.files_b[b]]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        rng, _, a, a_mask, b_index = self._pick(key)
        b, b_mask = self._crop(as_rgb(read_image(self.files_b[b_index])), rng)
        rgb = to_tensor(b)
        b_gray = gray_from_rgb(rgb) if self.ager is None else to_tensor(self.ager(b, rng))
        return {"gray": to_tensor(a)[0], "mask": to_tensor(a_mask)[0], "b_rgb": rgb[0],
                "b_gray": b_gray[0], "b_mask": to_tensor(b_mask)[0],
                "b_scene": torch.tensor(self.scene_b[b_index])}
