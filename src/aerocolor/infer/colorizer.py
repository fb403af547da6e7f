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

import numpy as np
import torch
import torch.nn.functional as F

from ..color import rgb_from_output
from ..config import Config
from ..errors import AerocolorError, CheckpointError
from .generator import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_TILE, Generator, NormStats

NORM_SAMPLE_PIXELS = 2**21  # pixels that instance-norm statistics are pooled over
NORM_SAMPLE_SIDE = 256  # blocks they come from on larger inputs (32 of them: many small blocks cover more)
COLOUR_CHUNK = 2048  # columns converted to colour at a time, to bound memory on wide rasters

__all__ = ["DEFAULT_BATCH", "DEFAULT_OVERLAP", "DEFAULT_TILE", "Colorizer", "tile_windows"]

# read(top, left, height, width) -> gray float32 array in [0, 1]
GrayReader = Callable[[int, int, int, int], np.ndarray]


MIN_SIDE = 32  # smaller inputs are padded up to this: the networks' reflection pads need room


def pad_to_multiple(x: torch.Tensor, multiple: int, min_side: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad (N,C,H,W) at the bottom/right to multiples of ``multiple``, at least ``min_side``;
    reflect where it can, else replicate."""
    h, w = x.shape[-2:]
    ph, pw = (-(-max(n, min_side) // multiple) * multiple - n for n in (h, w))
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


def check_tiling(tile: int, overlap: int, batch_size: int = 1) -> None:
    """Tiling options a colorizer can work with; the error names the option and the range."""
    if tile < MIN_SIDE:
        raise AerocolorError(f"--tile {tile}: tiles must be at least {MIN_SIDE} pixels a side")
    if not 0 <= overlap < tile:
        raise AerocolorError(f"--overlap {overlap}: must be between 0 and the tile size minus 1 "
                             f"({tile - 1}); e.g. --overlap {min(DEFAULT_OVERLAP, tile // 4)}")
    if batch_size < 1:
        raise AerocolorError(f"--batch-size {batch_size}: give at least 1 tile per forward pass")


class Colorizer:
    """A trained generator ready for inference (eval mode, no gradients).

    ``generator`` is any :class:`~aerocolor.infer.generator.Generator`: a method's torch
    generator or an ONNX model run by onnxruntime. One colorizer may serve many threads at once:
    nothing about a call is kept on it or on the generator.
    """

    norm_sample_pixels = NORM_SAMPLE_PIXELS
    norm_sample_side = NORM_SAMPLE_SIDE

    def __init__(self, generator: Generator, config: Config, device: torch.device, source: str = ""):
        self.generator = generator
        self.config = config
        self.device = device
        self.source = source

    @property
    def method(self):
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
        codes = getattr(self.generator, "latent_codes", None)
        if not self.multimodal or codes is None:
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
        return codes(count, generator, ref)

    @torch.no_grad()
    def raw_output(self, gray: torch.Tensor, z: torch.Tensor | None = None,
                   stats: NormStats = None) -> torch.Tensor:
        """(N,1,H,W) gray in [0, 1] on the device -> raw generator output of the same size, with
        whole-input statistics ``stats`` where given. Inputs smaller than the network accepts are
        padded up to ``MIN_SIDE`` and cropped back."""
        g, h, w = pad_to_multiple(gray, self.generator.size_multiple, MIN_SIDE)
        return self.generator(g, z, stats)[..., :h, :w].float()

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
            return None
        sample = norm_sample_windows(windows[-1][0] + windows[-1][2],
                                     windows[-1][1] + windows[-1][3], self.norm_sample_pixels,
                                     self.norm_sample_side)
        tiles = torch.cat([self.gray_tensor(read(*win)) for win in sample])
        tiles, _, _ = pad_to_multiple(tiles, self.generator.size_multiple)
        return self.generator.pooled_norm_stats(tiles, None if z is None else z.expand(len(sample), -1))

    @torch.no_grad()
    def blend_tiles(self, read: GrayReader, h: int, w: int, tile: int = DEFAULT_TILE,
                    overlap: int = DEFAULT_OVERLAP, z: torch.Tensor | None = None,
                    batch_size: int = DEFAULT_BATCH, progress=None, first_row: int = 0
                    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(top, gray_rows, raw_rows)``: finished rows of the blended output, top to
        bottom, one block per tile row, with their gray (both (1,C,rows,W) on the device).
        ``first_row``: the first tile row to yield (a resumed job); earlier tile rows are run only
        where their tiles reach it, so its blocks are the same as in a whole run."""
        check_tiling(tile, overlap, batch_size)
        z = self.latent(z)
        windows = tile_windows(h, w, tile, overlap)
        tops, lefts = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
        th, tw = min(tile, h), min(tile, w)
        if first_row >= len(tops):
            return
        start = first_tile_row(tops, th, first_row)
        weights: dict[tuple[bool, ...], torch.Tensor] = {}
        stats = self.norm_stats(read, windows, z)
        # preallocated rows [t, t + th) of the current tile row t (what the tile rows above added
        # below their finished rows is carried up), instead of strips grown and cut per tile row
        gray = torch.empty(1, 1, th, w, device=self.device)
        acc = torch.zeros(1, self.generator.out_channels, th, w, device=self.device)
        wsum = torch.zeros(1, 1, th, w, device=self.device)
        for i, (top, (have, _, rows, _)) in enumerate(
                zip(tops[start:], row_reads(h, w, tile, overlap, first_row), strict=True), start):
            gray[..., th - rows:, :] = self.gray_tensor(read(have, 0, rows, w))
            for j in range(0, len(lefts), batch_size):
                chunk = lefts[j:j + batch_size]
                crops = torch.cat([gray[..., lft:lft + tw] for lft in chunk])
                outs = self.raw_output(crops, None if z is None else z.expand(len(chunk), -1), stats)
                for lft, o in zip(chunk, outs, strict=True):
                    edges = (top == 0, lft == 0, top + th == h, lft + tw == w)
                    if edges not in weights:
                        weights[edges] = torch.from_numpy(
                            feather_weights(th, tw, overlap, *edges)).to(self.device)
                    acc[..., lft:lft + tw] += o * weights[edges]
                    wsum[..., lft:lft + tw] += weights[edges]
                if progress is not None and i >= first_row:
                    progress(len(chunk))
            done = (tops[i + 1] if i + 1 < len(tops) else h) - top
            if i >= first_row:
                yield (top, gray[..., :done, :].clone(),
                       acc[..., :done, :] / wsum[..., :done, :].clamp(min=1e-6))
            keep = th - done
            for buf in (gray, acc, wsum):
                buf[..., :keep, :] = buf[..., done:, :].clone()
            acc[..., keep:, :] = 0
            wsum[..., keep:, :] = 0


def first_tile_row(tops: list[int], th: int, first_row: int) -> int:
    """The first tile row whose tiles reach the top of tile row ``first_row``."""
    if first_row == 0:
        return 0
    return next(j for j, t in enumerate(tops) if t + th > tops[first_row])


def row_reads(h: int, w: int, tile: int, overlap: int, first_row: int = 0
              ) -> list[tuple[int, int, int, int]]:
    """The gray reads (top, left, height, width) that :meth:`Colorizer.blend_tiles` makes, in
    order: each tile row's rows not read for the one above (a reader can fetch them ahead)."""
    tops, th = tile_starts(h, tile, overlap), min(tile, h)
    if first_row >= len(tops):
        return []
    start = first_tile_row(tops, th, first_row)
    reads, have = [], tops[start]
    for top in tops[start:]:
        reads.append((have, 0, top + th - have, w))
        have = top + th
    return reads


def array_reader(gray: np.ndarray) -> GrayReader:
    return lambda t, lft, hh, ww: gray[t:t + hh, lft:lft + ww]
