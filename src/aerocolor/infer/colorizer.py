"""One inference path for every input: gray in, colour out, tiled, blended and streamed.

A gray source (an array in memory, or a raster read window by window) is cut into overlapping
tiles. The raw network outputs (RGB, or ab in ``lab`` mode) are blended with feather weights
that are zero in a margin along each tile edge facing a neighbour (cropping the network's edge
effects) and ramp smoothly across the rest of the overlap. Rows of finished output are handed on
as soon as no later tile can touch them, so memory is bounded by one strip of tiles however
large the input. Layers that see the whole input (instance norms, and the scene-context pools of
ResNet generators) get the same statistics in every tile (gathered over tiles spread across the
whole input first), so an area gets the same colour whichever tile it fell in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import checkpoint_config, load_checkpoint
from ..color import net_input, rgb_from_output
from ..config import Config
from ..errors import CheckpointError
from ..methods import Method, get_method
from ..nets.generators import ContextPool

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
DEFAULT_BATCH = 4
NORM_SAMPLE_PIXELS = 2**21  # pixels that instance-norm statistics are pooled over
NORM_SAMPLE_SIDE = 256  # blocks they come from on larger inputs (32 of them: many small blocks cover more)
COLOUR_CHUNK = 2048  # columns converted to colour at a time, to bound memory on wide rasters

# read(top, left, height, width) -> gray float32 array in [0, 1]
GrayReader = Callable[[int, int, int, int], np.ndarray]


def default_model_path() -> Path:
    """The model bundled with the package."""
    return Path(str(resources.files("aerocolor") / "models" / "default.pt"))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(
            f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Pad (N,C,H,W) at the bottom/right to multiples of ``multiple``; reflect where it can."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length ``tile`` covering ``n`` pixels, overlapping by at least
    ``overlap``; the last one is shifted inwards to end at the border."""
    if n <= tile:
        return [0]
    step = max(1, tile - overlap)
    return sorted(set(range(0, n - tile, step)) | {n - tile})


def tile_windows(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows (top, left, height, width) covering an HxW image, row by row."""
    return [(t, lft, min(tile, h), min(tile, w))
            for t in tile_starts(h, tile, overlap) for lft in tile_starts(w, tile, overlap)]


def default_margin(overlap: int) -> int:
    return overlap // 4


def feather_ramp(n: int, overlap: int, margin: int, lo_open: bool, hi_open: bool) -> np.ndarray:
    """1-D weights: zero for ``margin`` pixels at each open end, then a smoothstep up to 1 by
    ``overlap`` pixels in; closed ends (the image border) stay 1. Two neighbours overlapping by
    exactly ``overlap`` get weights that add up to 1."""
    k = min(overlap, n // 2)
    m = min(margin, max(0, (k - 1) // 2))
    d = np.arange(n, dtype=np.float32) + 0.5
    r = np.ones(n, np.float32)
    if k == 0:
        return r
    for is_open, dist in ((lo_open, d), (hi_open, n - d)):
        if is_open:
            u = np.clip((dist - m) / (k - 2 * m), 0.0, 1.0)
            r = np.minimum(r, u * u * (3 - 2 * u))
    return r


def feather_weights(th: int, tw: int, overlap: int, at_top: bool, at_left: bool, at_bottom: bool,
                    at_right: bool, margin: int | None = None) -> np.ndarray:
    """Weights of a tile: feathered on each side that touches a neighbouring tile, 1 at the
    image border."""
    m = default_margin(overlap) if margin is None else margin
    return np.outer(feather_ramp(th, overlap, m, not at_top, not at_bottom),
                    feather_ramp(tw, overlap, m, not at_left, not at_right))


def spread_sample(items: list, n: int) -> list:
    """At most ``n`` items spread evenly over the list."""
    if len(items) <= n:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def norm_sample_windows(h: int, w: int, budget: int, block: int = NORM_SAMPLE_SIDE
                        ) -> list[tuple[int, int, int, int]]:
    """Where instance-norm statistics come from: the whole input when it fits the pixel budget,
    else disjoint square blocks spread evenly across it (overlaps would count twice)."""
    if h * w <= budget:
        return [(0, 0, h, w)]
    side = min(block, h, w)
    grid = [(t, lft, side, side) for t in range(0, h - side + 1, side)
            for lft in range(0, w - side + 1, side)]
    return spread_sample(grid, max(1, budget // (side * side)))


def instance_norms(net: nn.Module) -> list[nn.Module]:
    """The layers whose output depends on statistics of the whole input: instance norms (without
    running statistics) and scene-context pools. All are called norms below; they share one
    mechanism (``running_mean``, ``running_var``, ``track_running_stats``)."""
    return [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm | ContextPool)
            and not m.track_running_stats]


NormStats = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]


class StatsComplete(Exception):
    """Raised by :func:`pooled_norm_stats` once its last expected norm has been pooled: the rest of
    the pass (upsampling, output layers) cannot change the statistics."""


@contextmanager
def pooled_norm_stats(norms: list[nn.Module], stop_after: int | None = None) -> Iterator[NormStats]:
    """Instance norms normalise with per-channel statistics pooled over the whole batch (as if
    its tiles were one image) and record them. With ``stop_after``, the ``stop_after``-th norm call
    raises :class:`StatsComplete` right after recording its statistics."""
    stats: NormStats = {}
    calls = 0

    def pool(module, args):
        nonlocal calls
        x = args[0].float()
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        stats[module] = (mean, var)
        module.running_mean, module.running_var, module.track_running_stats = mean, var, True
        calls += 1
        if stop_after is not None and calls >= stop_after:
            raise StatsComplete

    handles = [m.register_forward_pre_hook(pool) for m in norms]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()
        for m in norms:
            m.running_mean, m.running_var, m.track_running_stats = None, None, False


@contextmanager
def shared_norm_stats(stats: NormStats) -> Iterator[None]:
    """Instance norms normalise with the given statistics instead of each input's own."""
    for m, (mean, var) in stats.items():
        m.running_mean, m.running_var, m.track_running_stats = mean, var, True
    try:
        yield
    finally:
        for m in stats:
            m.running_mean, m.running_var, m.track_running_stats = None, None, False


def z_dim(method: Method) -> int:
    """Length of a multimodal method's latent code (0 for the others)."""
    if not method.multimodal:
        return 0
    for n in (getattr(method, "nz", None), getattr(method.opts, "nz", None),
              method.cfg.options.get("nz")):
        if n:
            return int(n)
    raise CheckpointError(f"method {method.name!r} is multimodal but names no latent size (nz)")


class TorchGenerator:
    """A method's generator: gray in [0, 1] (N,1,H,W) -> raw output, with torch."""

    def __init__(self, method: Method, device: torch.device):
        self.method = method.to(device).eval()
        self.device = device
        self.mode = method.mode
        self.size_multiple = method.size_multiple
        self.out_channels = method.out_channels
        self.multimodal = method.multimodal
        self.z_dim = z_dim(method)
        self.norms = instance_norms(method)
        self.instance_norm = bool(self.norms)
        self._norm_calls: int | None = None  # norm calls in one pass, counted on first use

    def __call__(self, gray: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return self.method.generate(net_input(gray, self.mode), z)

    def norm_calls(self, z: torch.Tensor | None) -> int:
        """How many times one pass calls a norm, counted on a small input once."""
        if self._norm_calls is None:
            side = max(64, self.size_multiple)
            gray = torch.zeros(1, 1, side, side, device=self.device)
            calls: list[nn.Module] = []
            handles = [m.register_forward_pre_hook(lambda m, _: calls.append(m)) for m in self.norms]
            try:
                with torch.no_grad():
                    self(gray, None if z is None else z[:1])
            finally:
                for h in handles:
                    h.remove()
            self._norm_calls = len(calls)
        return self._norm_calls

    def pooled_norm_stats(self, gray: torch.Tensor, z: torch.Tensor | None) -> NormStats:
        """Run a batch with every instance norm pooled over the whole batch; their statistics. The
        pass stops at the last norm (a scene context sits mid-network, so about half is skipped)."""
        with pooled_norm_stats(self.norms, stop_after=self.norm_calls(z)) as stats:
            try:
                self(gray, z)
            except StatsComplete:
                pass
        return stats

    def sharing_norm_stats(self, stats: NormStats):
        """Context in which every instance norm uses ``stats`` instead of each input's own."""
        return shared_norm_stats(stats)


class Colorizer:
    """A trained generator ready for inference (eval mode, no gradients).

    ``generator`` maps gray (N,1,H,W) in [0, 1] to the raw output; it is a method's torch
    generator or an ONNX model run by onnxruntime (see :mod:`aerocolor.infer.onnx`).
    """

    norm_sample_pixels = NORM_SAMPLE_PIXELS
    norm_sample_side = NORM_SAMPLE_SIDE

    def __init__(self, generator, config: Config, device: torch.device, source: str = ""):
        self.generator = generator
        self.config = config
        self.device = device
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto",
             backend: str = "auto") -> Colorizer:
        """Load a checkpoint (``.pt``) or an exported ONNX model (``.onnx``); ``backend`` is
        ``torch``, ``onnx`` (a checkpoint is exported on the fly) or ``auto`` (by file type)."""
        path = Path(path) if path is not None else default_model_path()
        if not path.is_file() and path == default_model_path():
            raise CheckpointError(
                "no bundled model in this install; give a checkpoint "
                "(aerocolor colorize -m CKPT ...)")
        if backend not in ("auto", "torch", "onnx"):
            raise CheckpointError(f"unknown backend {backend!r}: choose torch, onnx or auto")
        if path.suffix.lower() == ".onnx" or backend == "onnx":
            if path.suffix.lower() == ".onnx" and backend == "torch":
                raise CheckpointError(f"{path}: an ONNX model runs with --backend onnx, not torch")
            from .onnx import load_onnx_colorizer

            return load_onnx_colorizer(path, device)
        return cls.from_method(*load_method(path), device, str(path))

    @classmethod
    def from_method(cls, method: Method, config: Config, device: str | torch.device = "cpu",
                    source: str = "") -> Colorizer:
        dev = device if isinstance(device, torch.device) else pick_device(device)
        return cls(TorchGenerator(method, dev), config, dev, source)

    @property
    def method(self) -> Method | None:
        """The torch method (None for an ONNX model)."""
        return getattr(self.generator, "method", None)

    @property
    def mode(self) -> str:
        return self.generator.mode

    @property
    def multimodal(self) -> bool:
        return self.generator.multimodal

    def latent(self, z: torch.Tensor | None) -> torch.Tensor | None:
        """The latent code of a multimodal method: the given one, or the prior's mean (zeros),
        the same for every tile so that the colours agree."""
        if not self.multimodal or z is not None:
            return z
        return torch.zeros(1, self.generator.z_dim, device=self.device)

    def latent_codes(self, count: int, seed: int = 0, style: np.ndarray | None = None
                     ) -> torch.Tensor:
        """Latent codes (K, nz) of a multimodal model: ``count`` seeded draws from the prior, or,
        with a colour ``style`` image (HxWx3 in [0, 1], seen at the training crop scale), its
        own code (``count`` 0) or ``count`` draws around it."""
        method = self.method
        if not self.multimodal or method is None:
            raise CheckpointError(
                f"{self.source or 'this model'}: gives one colorization per image; --samples and "
                "--style need a multimodal (BicycleGAN) checkpoint")
        ref = None
        if style is not None:
            ref = torch.from_numpy(np.ascontiguousarray(style, np.float32)).permute(2, 0, 1)[None]
            scale = self.config.data.crop_size / min(ref.shape[-2:])
            ref = F.interpolate(ref, scale_factor=scale, mode="bilinear", antialias=scale < 1)
            ref = ref.clamp(0, 1).to(self.device)
        generator = torch.Generator().manual_seed(seed)
        return method.latent_codes(count, generator, ref).to(self.device)

    @torch.no_grad()
    def raw_output(self, gray: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """(N,1,H,W) gray in [0, 1] on the device -> raw generator output of the same size."""
        g, h, w = pad_to_multiple(gray, self.generator.size_multiple)
        return self.generator(g, z)[..., :h, :w].float()

    def colorize(self, gray: np.ndarray, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 z: torch.Tensor | None = None, batch_size: int = DEFAULT_BATCH,
                 progress=None) -> np.ndarray:
        """Gray HxW float array in [0, 1] -> colour HxWx3 float array in [0, 1]."""
        if gray.ndim != 2:
            raise ValueError(f"colorize takes a 2-D gray array, got shape {gray.shape}")
        gray = np.asarray(gray, dtype=np.float32)
        out = np.empty(gray.shape + (3,), np.float32)
        for top, g, raw in self.blend_tiles(array_reader(gray), *gray.shape, tile, overlap, z,
                                            batch_size, progress):
            out[top:top + g.shape[-2]] = self.colour(raw, g)
        return out

    def colour(self, raw: torch.Tensor, gray: torch.Tensor) -> np.ndarray:
        """Blended raw output and its gray rows (1,C,h,W) -> colour hxWx3, converted a few
        columns at a time."""
        cols = [slice(c, c + COLOUR_CHUNK) for c in range(0, gray.shape[-1], COLOUR_CHUNK)]
        parts = [rgb_from_output(raw[..., c], gray[..., c], self.mode) for c in cols]
        return torch.cat(parts, dim=-1)[0].permute(1, 2, 0).cpu().numpy()

    def gray_tensor(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        return t[None, None].to(self.device)

    @torch.no_grad()
    def norm_stats(self, read: GrayReader, windows: list[tuple[int, int, int, int]],
                   z: torch.Tensor | None) -> NormStats:
        """Instance-norm statistics of the whole input, or of disjoint blocks spread across it,
        run as one batch whose every layer is normalised with statistics pooled over it."""
        if not self.generator.instance_norm or len(windows) < 2:
            return {}
        sample = norm_sample_windows(windows[-1][0] + windows[-1][2],
                                     windows[-1][1] + windows[-1][3], self.norm_sample_pixels,
                                     self.norm_sample_side)
        tiles = torch.cat([self.gray_tensor(read(*win)) for win in sample])
        tiles, _, _ = pad_to_multiple(tiles, self.generator.size_multiple)
        return self.generator.pooled_norm_stats(tiles, None if z is None else z.expand(len(sample), -1))

    @torch.no_grad()
    def blend_tiles(self, read: GrayReader, h: int, w: int, tile: int = DEFAULT_TILE,
                    overlap: int = DEFAULT_OVERLAP, z: torch.Tensor | None = None,
                    batch_size: int = DEFAULT_BATCH, progress=None
                    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(top, gray_rows, raw_rows)``: finished rows of the blended raw output, top to
        bottom, with their gray (both (1,C,rows,W) on the device)."""
        if overlap >= tile and max(h, w) > tile:
            raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
        z = self.latent(z)
        windows = tile_windows(h, w, tile, overlap)
        tops, lefts = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
        th, tw = min(tile, h), min(tile, w)
        weights: dict[tuple[bool, ...], torch.Tensor] = {}
        with self.generator.sharing_norm_stats(self.norm_stats(read, windows, z)):
            buf_top, gray = 0, self.gray_tensor(np.zeros((0, w), np.float32))
            acc = torch.zeros(1, self.generator.out_channels, 0, w, device=self.device)
            wsum = torch.zeros(1, 1, 0, w, device=self.device)
            for i, t in enumerate(tops):
                have = buf_top + gray.shape[-2]
                new = self.gray_tensor(read(have, 0, t + th - have, w))
                gray = torch.cat([gray, new], dim=-2)
                acc = torch.cat([acc, acc.new_zeros(1, acc.shape[1], new.shape[-2], w)], dim=-2)
                wsum = torch.cat([wsum, wsum.new_zeros(1, 1, new.shape[-2], w)], dim=-2)
                r = t - buf_top
                for j in range(0, len(lefts), batch_size):
                    chunk = lefts[j:j + batch_size]
                    crops = torch.cat([gray[..., r:r + th, lft:lft + tw] for lft in chunk])
                    outs = self.raw_output(crops, None if z is None else z.expand(len(chunk), -1))
                    for lft, o in zip(chunk, outs, strict=True):
                        edges = (t == 0, lft == 0, t + th == h, lft + tw == w)
                        if edges not in weights:
                            weights[edges] = torch.from_numpy(
                                feather_weights(th, tw, overlap, *edges)).to(self.device)
                        acc[..., r:r + th, lft:lft + tw] += o * weights[edges]
                        wsum[..., r:r + th, lft:lft + tw] += weights[edges]
                    if progress is not None:
                        progress(len(chunk))
                done = (tops[i + 1] if i + 1 < len(tops) else h) - buf_top
                blended = acc[..., :done, :] / wsum[..., :done, :].clamp(min=1e-6)
                yield buf_top, gray[..., :done, :], blended
                gray, acc, wsum = gray[..., done:, :], acc[..., done:, :], wsum[..., done:, :]
                buf_top += done


def array_reader(gray: np.ndarray) -> GrayReader:
    return lambda t, lft, hh, ww: gray[t:t + hh, lft:lft + ww]


def load_method(path: Path) -> tuple[Method, Config]:
    """Build a checkpoint's method (inference networks only) in eval-ready float32."""
    ckpt = load_checkpoint(path)
    config = checkpoint_config(ckpt, str(path))
    method = get_method(config.model.method)(config.model, training=False)
    try:
        method.load_nets_state({k: v for k, v in ckpt["nets"].items()
                                if k in method.inference_nets})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its config ({e})") from None
    return method.float().eval(), config
