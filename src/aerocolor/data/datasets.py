"""Training datasets. Randomness comes from (seed, epoch, index), so samples are identical
whatever the number of workers and after a resume."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..color import gray_from_rgb, to_tensor
from ..errors import ConfigError
from ..imageio import as_rgb, list_images, read_image
from .balance import balance_weights, scene_ids

NODATA_TOLERANCE = 1.0 / 255


def nodata_mask(img: np.ndarray, tol: float = NODATA_TOLERANCE) -> np.ndarray:
    """1 where a pixel carries data, 0 where it is pure black (scan borders, tile corners)."""
    peak = img if img.ndim == 2 else img.max(axis=2)
    return (peak > tol).astype(np.float32)


def random_window(rng: np.random.Generator, h: int, w: int, size: int) -> tuple[int, int, int, int]:
    """A random crop window (top, left, height, width) never larger than the image."""
    ch, cw = min(size, h), min(size, w)
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


def augment(arrays: list[np.ndarray], rng: np.random.Generator, flip: bool, rotate90: bool) -> list[np.ndarray]:
    """The same random flips and 90-degree rotation for each array (aerial images have no up)."""
    k = int(rng.integers(0, 4)) if rotate90 else 0
    fh = flip and rng.random() < 0.5
    fv = flip and rng.random() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(0, 1))
        if fh:
            a = a[:, ::-1]
        if fv:
            a = a[::-1]
        out.append(np.ascontiguousarray(a))
    return out


def pad_to(a: np.ndarray, size: int, mode: str = "reflect") -> np.ndarray:
    """Pad height and width at the bottom/right up to ``size``."""
    ph, pw = size - a.shape[0], size - a.shape[1]
    if ph <= 0 and pw <= 0:
        return a
    pads = [(0, max(ph, 0)), (0, max(pw, 0))] + [(0, 0)] * (a.ndim - 2)
    if mode == "reflect" and (ph >= a.shape[0] or pw >= a.shape[1]):
        mode = "symmetric" if ph <= a.shape[0] and pw <= a.shape[1] else "edge"
    return np.pad(a, pads, mode=mode) if mode != "constant" else np.pad(a, pads)


def resize_short_side(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = size / min(h, w)
    if s == 1:
        return img
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    chans = [img] if img.ndim == 2 else [img[:, :, c] for c in range(img.shape[2])]
    out = [np.asarray(Image.fromarray(c.astype(np.float32), mode="F").resize((nw, nh), Image.BICUBIC))
           for c in chans]
    res = out[0] if img.ndim == 2 else np.stack(out, axis=2)
    return np.clip(res, 0.0, 1.0)


def random_crop(img: np.ndarray, rng: np.random.Generator, crop_size: int, load_size: int | None,
                flip: bool, rotate90: bool) -> tuple[np.ndarray, np.ndarray]:
    """(crop, data mask) of an image: optional resize, random window, flips and rotation, then
    padding up to ``crop_size`` (the padding is masked out)."""
    if load_size:
        img = resize_short_side(img, load_size)
    top, left, ch, cw = random_window(rng, img.shape[0], img.shape[1], crop_size)
    img = img[top:top + ch, left:left + cw]
    mask = nodata_mask(img)
    img, mask = augment([img, mask], rng, flip, rotate90)
    return pad_to(img, crop_size), pad_to(mask, crop_size, "constant")


# (colour HxWx3 or gray HxW in [0, 1], generator) -> aged gray HxW in [0, 1]
Ager = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def make_ager(age: dict | None) -> Ager | None:
    """The synthetic-ageing function for gray inputs, or None when ageing is off."""
    if not age:
        return None
    from .ageing import build_ager

    return build_ager(age)


class PairedColorDataset(Dataset):
    """Colour images; each sample is a random crop with its gray version made on the fly.

    A sample is a dict of ``rgb`` (3,S,S), ``gray`` (1,S,S) in [0, 1], ``mask`` (1,S,S): 0 on
    pure-black no-data pixels and on padding (images smaller than the crop are padded, never
    upscaled), and ``scene``: the scene class in the file name as an index into
    ``scene_names`` (-1: none).
    """

    def __init__(self, folders: list[str], crop_size: int, seed: int = 0, load_size: int | None = None,
                 flip: bool = True, rotate90: bool = True, age: dict | None = None,
                 balance: str = "none", balance_strength: float = 1.0):
        if not folders:
            raise ConfigError("no training images: give --data FOLDER (colour images)")
        self.files = list_images(folders)
        if not self.files:
            raise ConfigError(f"no images found in {', '.join(map(str, folders))}: give folders of PNG/JPEG/TIFF")
        self.weights = balance_weights(self.files, folders, balance, balance_strength)  # for the sampler
        self.scene, self.scene_names = scene_ids(self.files)
        self.crop_size, self.seed, self.load_size = crop_size, seed, load_size
        self.flip, self.rotate90 = flip, rotate90
        self.ager = make_ager(age)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return random_crop(as_rgb(read_image(path)), rng, self.crop_size, self.load_size,
                           self.flip, self.rotate90)

    def sources(self, key: tuple[int, int]) -> list[Path]:
        """The files a sample is made from (for error messages)."""
        return [self.files[key[1]]]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        img, mask = self.load(self.files[index], rng)
        rgb = to_tensor(img)
        # the ager sees the colour crop: its film response weighs the channels itself
        gray = gray_from_rgb(rgb) if self.ager is None else to_tensor(self.ager(img, rng))
        return {"rgb": rgb[0], "gray": gray[0], "mask": to_tensor(mask)[0],
                "scene": torch.tensor(self.scene[index])}


class EpochSampler(Sampler):
    """Yields batches of (epoch, index) keys: each epoch a seeded permutation, split across
    ranks, starting at a given step so that a resumed run sees the same batches."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 start_step: int = 0, weights: np.ndarray | None = None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.weights = weights  # per-index probabilities: an epoch is n weighted draws
        self.rank, self.world, self.start_step = rank, world, start_step
        self.steps_per_epoch = n // (batch_size * world)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{n} training images are too few for batch size {batch_size} on {world} process(es)"
            )

    def _epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(self.n) if self.weights is None else rng.choice(self.n, self.n, p=self.weights)
        return perm[self.rank::self.world][: self.steps_per_epoch * self.batch_size]

    def keys_at(self, step: int) -> list[tuple[int, int]]:
        """The (epoch, index) keys of the batch of a (0-based) step."""
        epoch, s = divmod(step, self.steps_per_epoch)
        mine = self._epoch(epoch)
        return [(epoch, int(i)) for i in mine[s * self.batch_size:(s + 1) * self.batch_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            epoch, offset = divmod(step, self.steps_per_epoch)
            mine = self._epoch(epoch)
            for s in range(offset, self.steps_per_epoch):
                yield [(epoch, int(i)) for i in mine[s * self.batch_size:(s + 1) * self.batch_size]]
                step += 1
