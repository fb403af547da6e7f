"""One inference path for every input: gray array in, colour array out, tiled and blended.

Large inputs are split into overlapping tiles whose raw network outputs (RGB, or ab in ``lab``
mode) are blended with feather weights before the conversion to colour, so there are no seams;
in ``lab`` mode the blended ab is joined with the full-resolution L* of the input.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import checkpoint_config, load_checkpoint
from ..color import net_input, rgb_from_output
from ..config import Config
from ..errors import CheckpointError
from ..methods import Method, get_method

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


def default_model_path() -> Path:
    """The model bundled with the package."""
    return Path(str(resources.files("aerocolor") / "models" / "default.pt"))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad (N,C,H,W) at the bottom/right to multiples of ``multiple``; reflect where it can."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


def tile_windows(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (top, left, height, width) covering an HxW image, neighbours overlapping by at
    least ``overlap`` pixels; the last row/column is shifted inwards to end at the border."""

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = max(1, tile - overlap)
        s = list(range(0, n - tile, step)) + [n - tile]
        return sorted(set(s))

    return [(t, lft, min(tile, h), min(tile, w)) for t in starts(h) for lft in starts(w)]


def feather_weights(th: int, tw: int, overlap: int, at_top: bool, at_left: bool, at_bottom: bool,
                    at_right: bool) -> np.ndarray:
    """Weights that ramp from ~0 to 1 across ``overlap`` pixels on each side that touches a
    neighbouring tile, and stay 1 at the image border."""

    def ramp(n: int, lo_open: bool, hi_open: bool) -> np.ndarray:
        r = np.ones(n, np.float32)
        k = min(overlap, n // 2)
        if k > 0:
            up = (np.arange(k, dtype=np.float32) + 0.5) / k
            if lo_open:
                r[:k] = np.minimum(r[:k], up)
            if hi_open:
                r[n - k:] = np.minimum(r[n - k:], up[::-1])
        return r

    return np.outer(ramp(th, not at_top, not at_bottom), ramp(tw, not at_left, not at_right))


class Colorizer:
    """A trained generator ready for inference (eval mode, no gradients)."""

    def __init__(self, method: Method, config: Config, device: torch.device, source: str = ""):
        self.method = method.to(device).eval()
        self.config = config
        self.device = device
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> Colorizer:
        path = Path(path) if path is not None else default_model_path()
        if not path.is_file() and path == default_model_path():
            raise CheckpointError(
                "no bundled model in this install; give a checkpoint (aerocolor colorize -m CKPT ...)"
            )
        ckpt = load_checkpoint(path)
        config = checkpoint_config(ckpt, str(path))
        method = get_method(config.model.method)(config.model, training=False)
        try:
            method.load_nets_state({k: v for k, v in ckpt["nets"].items() if k in method.inference_nets})
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not match its config ({e})") from None
        method.float()
        return cls(method, config, pick_device(device), str(path))

    @property
    def mode(self) -> str:
        return self.method.mode

    @property
    def multimodal(self) -> bool:
        return self.method.multimodal

    @torch.no_grad()
    def raw_output(self, gray: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """(N,1,H,W) gray in [0, 1] on the device -> raw generator output of the same size."""
        x, h, w = pad_to_multiple(net_input(gray, self.mode), self.method.size_multiple)
        return self.method.generate(x, z)[..., :h, :w].float()

    def colorize(self, gray: np.ndarray, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 z: torch.Tensor | None = None, batch_size: int = 4,
                 progress=None) -> np.ndarray:
        """Gray HxW float array in [0, 1] -> colour HxWx3 float array in [0, 1]."""
        if gray.ndim != 2:
            raise ValueError(f"colorize takes a 2-D gray array, got shape {gray.shape}")
        g = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None].to(self.device)
        out = self.blend_tiles(g, tile, overlap, z, batch_size, progress)
        return rgb_from_output(out, g, self.mode)[0].permute(1, 2, 0).cpu().numpy()

    def blend_tiles(self, g: torch.Tensor, tile: int, overlap: int, z: torch.Tensor | None,
                    batch_size: int, progress=None) -> torch.Tensor:
        h, w = g.shape[-2:]
        windows = tile_windows(h, w, tile, overlap)
        if len(windows) == 1:
            return self.raw_output(g, z)
        acc = torch.zeros(1, self.method.out_channels, h, w, device=self.device)
        wsum = torch.zeros(1, 1, h, w, device=self.device)
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            crops = torch.cat([g[..., t:t + th, lft:lft + tw] for t, lft, th, tw in chunk])
            outs = self.raw_output(crops, None if z is None else z.expand(len(chunk), -1))
            for (t, lft, th, tw), o in zip(chunk, outs):
                wt = torch.from_numpy(feather_weights(th, tw, overlap, t == 0, lft == 0,
                                                      t + th == h, lft + tw == w)).to(self.device)
                acc[..., t:t + th, lft:lft + tw] += o * wt
                wsum[..., t:t + th, lft:lft + tw] += wt
            if progress is not None:
                progress(len(chunk))
        return acc / wsum.clamp(min=1e-6)
