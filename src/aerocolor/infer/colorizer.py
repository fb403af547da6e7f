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
from .reference import Reference, pad_planes

NORM_SAMPLE_PIXELS = 2**21  # pixels that instance-norm statistics are pooled over
# On the CPU, an input too large to run whole is cut into tiles of at most this side, whatever
# --tile: per pixel, 768 px tiles run as fast as 1024 px ones there, and a tile pass holds
# 200-400 MB less (benchmarks/colorize_speed.py --memory ... --tiles 1024 768; README "Speed").
CPU_CUT_TILE = 768
NORM_SAMPLE_SIDE = 256  # blocks they come from on larger inputs (32 of them: many small blocks cover more)
STATS_CHUNK_PIXELS = 2**18  # statistics sample pixels run at once: its peak stays below a 1024 px tile's
MAX_STATS_WAVES = 4  # most passes over the sample that accumulating statistics may take
COLOUR_CHUNK = 2048  # columns converted to colour at a time, to bound memory on wide rasters

__all__ = ["DEFAULT_BATCH", "DEFAULT_OVERLAP", "DEFAULT_TILE", "Colorizer", "tile_windows"]

# read(top, left, height, width) -> gray float32 array in [0, 1]
GrayReader = Callable[[int, int, int, int], np.ndarray]
# blank(top, left, height, width) -> True when the window holds no valid pixel (all no-data)
BlankTest = Callable[[int, int, int, int], bool]


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


def axis_tiles(n: int, tile: int, overlap: int, multiple: int = 1) -> tuple[list[int], int]:
    """(starts, side) of the fewest equal tiles of at most ``tile`` pixels covering ``n``
    pixels, overlapping by at least ``overlap``. Spreading the overlap over the tiles wastes far
    less than full-size tiles with the last one shifted back (2 tiles of 332 px for 600 px, not
    2 of 512). Sides and steps are multiples of ``multiple``, so every start but the last (which
    ends at the border) is too: a network that downsamples by 4 gives other output for an input
    shifted by 2 pixels."""
    if n <= tile:
        return [0], n
    if overlap + 2 * multiple > tile:
        multiple = 1
    count = -(-(n - overlap) // (tile - overlap))
    while True:
        side = -(-(n + (count - 1) * overlap) // count)
        side = -(-side // multiple) * multiple
        while (count - 1) * ((side - overlap) // multiple * multiple) + side < n:
            side += multiple
        if side <= tile:
            break
        count += 1
    step = (side - overlap) // multiple * multiple
    return [i * step for i in range(count - 1)] + [n - side], side


def tile_plan(h: int, w: int, tile: int, overlap: int, multiple: int = 1, cut: int | None = None
              ) -> tuple[list[int], list[int], int, int]:
    """(tops, lefts, tile height, tile width): one tile when the image fits ``tile`` squared
    pixels (a 600 x 600 photo is one 600 px tile, not four overlapping 512 px ones), else the
    fewest equal tiles of at most ``cut`` (default ``tile``) a side (see :func:`axis_tiles`)."""
    if h * w <= tile * tile:
        return [0], [0], h, w
    side = min(tile, cut) if cut else tile
    (tops, th), (lefts, tw) = (axis_tiles(n, side, max(0, min(overlap, side - 1)), multiple) for n in (h, w))
    return tops, lefts, th, tw


def tile_windows(h: int, w: int, tile: int, overlap: int, multiple: int = 1
                 ) -> list[tuple[int, int, int, int]]:
    """Windows (top, left, height, width) covering an HxW image, row by row."""
    tops, lefts, th, tw = tile_plan(h, w, tile, overlap, multiple)
    return [(t, lft, th, tw) for t in tops for lft in lefts]


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
    return spread_blocks(h, w, max(1, budget // (side * side)), block)


def spread_blocks(h: int, w: int, count: int, block: int = NORM_SAMPLE_SIDE) -> list[tuple[int, int, int, int]]:
    """Up to ``count`` disjoint squares of at most ``block`` a side spread evenly over an HxW input."""
    side = min(block, h, w)
    grid = [(t, lft, side, side) for t in range(0, h - side + 1, side)
            for lft in range(0, w - side + 1, side)]
    return spread_sample(grid, count)


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
    stats_chunk_pixels = STATS_CHUNK_PIXELS
    max_stats_waves = MAX_STATS_WAVES
    backend = ""  # which runtime runs the generator, and why (set by the loaders)

    def __init__(self, generator: Generator, config: Config, device: torch.device, source: str = ""):
        self.generator = generator
        self.config = config
        self.device = device
        self.cut_tile: int | None = CPU_CUT_TILE  # None: cut at --tile on the CPU too
        self.source = source
        # multiplier on the colour's a*, b*: the model's calibrated saturation unless set otherwise
        self.chroma = config.model.chroma

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
                   stats: NormStats = None, ref: torch.Tensor | None = None) -> torch.Tensor:
        """(N,1,H,W) gray in [0, 1] on the device -> raw generator output of the same size, with
        whole-input statistics ``stats`` where given and reference planes ``ref`` (N,4,H,W) for a
        reference model. Inputs smaller than the network accepts are padded up to ``MIN_SIDE``
        and cropped back."""
        g, h, w = pad_to_multiple(gray, self.generator.size_multiple, MIN_SIDE)
        if ref is None:
            return self.generator(g, z, stats)[..., :h, :w].float()
        ref = pad_planes(ref.to(g.device), *g.shape[-2:])
        return self.generator(g, z, stats, ref)[..., :h, :w].float()

    def check_reference(self, reference: object | None) -> None:
        """A reference (or a request for one) needs a model trained to take one."""
        if reference is not None and not getattr(self.generator, "reference_channels", 0):
            raise CheckpointError(
                f"{self.source or 'this model'}: takes no colour reference; drop -m to use the bundled "
                "reference model, or give one trained with model.reference.enabled=true")

    def reference_passes(self, read: GrayReader, windows: list[tuple[int, int, int, int]],
                         z: torch.Tensor | None, reference: Reference | None, stats: NormStats = None
                         ) -> list[tuple[float, NormStats, Reference | None]]:
        """(weight, whole-input statistics, reference) of each pass whose raw outputs are mixed:
        one pass, or at a ``strength`` between 0 and 1 the passes with and without the reference.
        Shared ``stats`` serve the pass without a reference."""
        self.check_reference(reference)
        strength = 0.0 if reference is None else reference.strength
        passes = []
        if strength > 0:
            passes.append((strength, self.norm_stats(read, windows, z, reference), reference))
        if strength < 1:
            passes.append((1.0 - strength, self.norm_stats(read, windows, z) if stats is None else stats, None))
        return passes

    def colorize(self, gray: np.ndarray, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
                 z: torch.Tensor | None = None, batch_size: int = DEFAULT_BATCH,
                 progress=None, reference: Reference | None = None, stats: NormStats = None) -> np.ndarray:
        """Gray HxW float array in [0, 1] -> colour HxWx3 float array in [0, 1] (following a colour
        ``reference`` on the same grid, for a reference model); ``stats``: shared whole-input
        statistics (see :meth:`blend_tiles`)."""
        if gray.ndim != 2:
            raise ValueError(f"colorize takes a 2-D gray array, got shape {gray.shape}")
        gray = np.asarray(gray, dtype=np.float32)
        out = np.empty(gray.shape + (3,), np.float32)
        for top, g, raw in self.blend_tiles(array_reader(gray), *gray.shape, tile, overlap, z,
                                            batch_size, progress, reference, stats):
            out[top:top + g.shape[-2]] = self.colour(raw, g)
        return out

    def colour(self, raw: torch.Tensor, gray: torch.Tensor) -> np.ndarray:
        """Blended raw output and its gray rows (1,C,h,W) -> colour hxWx3, converted a few
        columns at a time."""
        cols = [slice(c, c + COLOUR_CHUNK) for c in range(0, gray.shape[-1], COLOUR_CHUNK)]
        parts = [rgb_from_output(raw[..., c], gray[..., c], self.mode, self.chroma) for c in cols]
        return torch.cat(parts, dim=-1)[0].permute(1, 2, 0).cpu().numpy()

    def gray_tensor(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None, None]
        if self.device.type != "cuda":
            return t.to(self.device)
        # through page-locked memory: the copy to the GPU then runs without holding this thread
        return t.pin_memory().to(self.device, non_blocking=True)

    @torch.no_grad()
    def norm_stats(self, read: GrayReader, windows: list[tuple[int, int, int, int]],
                   z: torch.Tensor | None, reference: Reference | None = None) -> NormStats:
        """Instance-norm statistics of the whole input, or of disjoint blocks spread across it
        (with their reference planes where given), every layer normalised with statistics pooled
        over all of them: accumulated a few blocks at a time where the generator can (see
        :meth:`stats_chunks`), else run as one batch."""
        if not self.generator.instance_norm or len(windows) < 2:
            return None
        sample = norm_sample_windows(windows[-1][0] + windows[-1][2],
                                     windows[-1][1] + windows[-1][3], self.norm_sample_pixels,
                                     self.norm_sample_side)

        def batch(wins: list[tuple[int, int, int, int]]):
            tiles = torch.cat([self.gray_tensor(read(*win)) for win in wins])
            tiles, _, _ = pad_to_multiple(tiles, self.generator.size_multiple)
            zz = None if z is None else z.expand(len(wins), -1)
            planes = None if reference is None else torch.cat(
                [pad_planes(reference.window(*win).to(self.device), *tiles.shape[-2:]) for win in wins])
            return tiles, zz, planes

        return self.pooled_stats(sample, sample[0][2] * sample[0][3], batch, z)

    def pooled_stats(self, items: list, item_pixels: int, batch: Callable[[list], tuple],
                     z: torch.Tensor | None) -> NormStats:
        """Whole-input statistics pooled over equal ``items`` (windows, blocks) of ``item_pixels``
        each, ``batch`` making a generator batch (gray, z, ref) of some of them: accumulated a
        few at a time where the generator can (see :meth:`stats_chunks`), else one batch."""
        chunks = self.stats_chunks(items, item_pixels, z)
        if len(chunks) == 1:
            return self.generator.pooled_norm_stats(*batch(items))
        return self.generator.accumulated_norm_stats(lambda: (batch(c) for c in chunks))

    def stats_chunks(self, items: list, item_pixels: int, z: torch.Tensor | None) -> list[list]:
        """The items of a statistics sample in batches of at most ``stats_chunk_pixels``, where
        the generator accumulates statistics in at most ``max_stats_waves`` passes over them (a
        scene-context model needs one; an instance-norm net one per norm, 10 to 30, and the
        recomputation would cost more than the memory saved: it keeps one batch)."""
        waves = self.generator.stats_waves(z)
        per = max(1, self.stats_chunk_pixels // item_pixels)
        if not 0 < waves <= self.max_stats_waves or len(items) <= per:
            return [items]
        return [items[i:i + per] for i in range(0, len(items), per)]

    def plan(self, h: int, w: int, tile: int, overlap: int) -> tuple[list[int], list[int], int, int]:
        """This generator's tiling of an HxW input (see :func:`tile_plan`): whole when it fits
        ``tile`` squared pixels, else tiles of at most ``tile`` (``CPU_CUT_TILE`` on the CPU)."""
        return tile_plan(h, w, tile, overlap, self.generator.size_multiple, self.cut)

    @property
    def cut(self) -> int | None:
        """The largest side of the tiles a too-large input is cut into, beside ``--tile``:
        ``cut_tile`` on the CPU, none elsewhere."""
        return self.cut_tile if self.device.type == "cpu" else None

    @torch.no_grad()
    def blend_tiles(self, read: GrayReader, h: int, w: int, tile: int = DEFAULT_TILE,
                    overlap: int = DEFAULT_OVERLAP, z: torch.Tensor | None = None,
                    batch_size: int = DEFAULT_BATCH, progress=None, reference: Reference | None = None,
                    stats: NormStats = None, blank: BlankTest | None = None, first_row: int = 0
                    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(top, gray_rows, raw_rows)``: finished rows of the blended raw output, top to
        bottom, one block per tile row, with their gray (both (1,C,rows,W) on the device); with a
        colour ``reference`` on the same grid for a reference model. ``stats``: whole-input
        statistics to use instead of the input's own (e.g. shared by the frames of a flight).
        Tiles for which ``blank`` says True (no valid pixel: the reader knows its no-data) are not
        run; rows covered by nothing else get a zero raw output. ``first_row``: the first tile row
        to yield (a resumed job); earlier tile rows are run only where their tiles reach it, so its
        blocks are the same as in a whole run."""
        check_tiling(tile, overlap, batch_size)
        z = self.latent(z)
        tops, lefts, th, tw = self.plan(h, w, tile, overlap)
        if first_row >= len(tops):
            return
        windows = [(t, lft, th, tw) for t in tops for lft in lefts]
        ramps = (TileRamps(tops, th), TileRamps(lefts, tw))
        passes = self.reference_passes(read, windows, z, reference, stats)
        start = first_tile_row(tops, th, first_row)
        # preallocated rows [t, t + th) of the current tile row t (what the tile rows above added
        # below their finished rows is carried up), instead of strips grown and cut per tile row
        gray = torch.empty(1, 1, th, w, device=self.device)
        acc = torch.zeros(1, self.generator.out_channels, th, w, device=self.device)
        wsum = torch.zeros(1, 1, th, w, device=self.device)
        for i, (top, (have, _, rows, _)) in enumerate(
                zip(tops[start:], row_reads(tops, th, w, first_row), strict=True), start):
            gray[..., th - rows:, :] = self.gray_tensor(read(have, 0, rows, w))
            row = [lft for lft in lefts if blank is None or not blank(top, lft, th, tw)]
            if progress is not None and i >= first_row and len(row) < len(lefts):
                progress(len(lefts) - len(row))
            for j in range(0, len(row), batch_size):
                chunk = row[j:j + batch_size]
                crops = torch.cat([gray[..., lft:lft + tw] for lft in chunk])
                zz = None if z is None else z.expand(len(chunk), -1)
                outs = sum(weight * self.raw_output(crops, zz, pass_stats, None if ref is None else torch.cat(
                    [ref.window(top, lft, th, tw) for lft in chunk]).to(self.device))
                    for weight, pass_stats, ref in passes)
                for lft, o in zip(chunk, outs, strict=True):
                    wt = self.tile_weights(ramps, i, lefts.index(lft))
                    acc[..., lft:lft + tw] += o * wt
                    wsum[..., lft:lft + tw] += wt
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

    def row_reads(self, h: int, w: int, tile: int, overlap: int, first_row: int = 0
                  ) -> list[tuple[int, int, int, int]]:
        """The gray reads that :meth:`blend_tiles` makes for an HxW input (see :func:`row_reads`)."""
        tops, _, th, _ = self.plan(h, w, tile, overlap)
        return row_reads(tops, th, w, first_row)

    def tile_weights(self, ramps: tuple[TileRamps, TileRamps], i: int, j: int) -> torch.Tensor:
        rows, cols = ramps[0].ramp(i), ramps[1].ramp(j)
        return torch.from_numpy(np.outer(rows, cols)).to(self.device)



def first_tile_row(tops: list[int], th: int, first_row: int) -> int:
    """The first tile row whose tiles reach the top of tile row ``first_row``."""
    if first_row == 0:
        return 0
    return next(j for j, t in enumerate(tops) if t + th > tops[first_row])


def row_reads(tops: list[int], th: int, w: int, first_row: int = 0) -> list[tuple[int, int, int, int]]:
    """The gray reads (top, left, height, width) that :meth:`Colorizer.blend_tiles` makes for tile
    rows starting at ``tops``, ``th`` rows each, over ``w`` columns, in order: each tile row's rows
    not read for the one above (a reader can fetch them ahead)."""
    if first_row >= len(tops):
        return []
    start = first_tile_row(tops, th, first_row)
    reads, have = [], tops[start]
    for top in tops[start:]:
        reads.append((have, 0, top + th - have, w))
        have = top + th
    return reads


class TileRamps:
    """Feather ramps along one axis of a tiling. Each end of a tile that faces a neighbour ramps
    across the overlap actually there (at least the asked one: the last step is often shorter),
    its margin a quarter of it, so two neighbours always cross-fade to a constant sum."""

    def __init__(self, starts: list[int], side: int):
        self.starts, self.side = starts, side
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def ramp(self, k: int) -> np.ndarray:
        s, side = self.starts, self.side
        lo = side - (s[k] - s[k - 1]) if k > 0 else 0
        hi = side - (s[k + 1] - s[k]) if k + 1 < len(s) else 0
        if (lo, hi) not in self.cache:
            self.cache[lo, hi] = np.minimum(feather_ramp(side, lo, default_margin(lo), True, False),
                                            feather_ramp(side, hi, default_margin(hi), False, True))
        return self.cache[lo, hi]


def array_reader(gray: np.ndarray) -> GrayReader:
    return lambda t, lft, hh, ww: gray[t:t + hh, lft:lft + ww]
