"""Training folders from colour tiles and old tiles, split train/val/test by geographic blocks
(never by random tile, so neighbouring tiles cannot leak across splits).

Layout written under OUT:
  paired/{train,val,test}/color/*.png   colour tiles
  paired/{train,val,test}/gray/*.png    their gray (optionally aged) versions
  aligned/{train,val,test}/*.png        gray | colour side by side (the reference pix2pix format)
  unpaired/{train,val,test}{A,B}/*.png  A: old photos, B: colour (the reference CycleGAN layout)
  splits.csv                            every tile's split and block
"""

from __future__ import annotations

import csv
import math
import shutil
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..color import gray_from_rgb, to_numpy, to_tensor
from ..errors import AerocolorError
from ..imageio import as_rgb, atomic_write, output_folder, read_image, write_image
from .ageing import Ageing, age_image
from .manifest import read_manifest

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Tile:
    path: Path
    name: str
    record: dict


def read_tiles(folder: str | Path) -> list[Tile]:
    """The good tiles of a folder made by ``aerocolor fetch`` (one layer) or ``aerocolor tiles``."""
    folder = Path(folder)
    records = read_manifest(folder)
    if not records:
        raise AerocolorError(f"{folder}: no manifest.jsonl; make the tiles with aerocolor fetch "
                             "(give OUT/<layer>) or aerocolor tiles, so their positions are known")
    tiles = [Tile(folder / r["path"], f"{folder.name}/{Path(r['path']).with_suffix('')}"
                  .replace("/", "_"), r)
             for r in records.values()
             if r.get("status") == "ok" and (folder / r["path"]).is_file()]
    if not tiles:
        raise AerocolorError(f"{folder}: its manifest lists no tile present on disk")
    return sorted(tiles, key=lambda t: t.name)


@lru_cache(maxsize=16)
def _to_mercator(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:3857", always_xy=True).transform


def _mercator_box(record: dict) -> tuple[float, float, float]:
    """Centre x, y and width of a tile in Web Mercator metres (a common grid for any CRS)."""
    x0, y0, x1, y1 = record["bounds"]
    xs, ys = _to_mercator(record["crs"])([x0, x1, (x0 + x1) / 2], [y0, y1, (y0 + y1) / 2])
    return xs[2], ys[2], abs(xs[1] - xs[0])


def block_keys(tiles: list[Tile], block: int) -> list[tuple]:
    """A block per tile: ``block`` x ``block`` tiles of ground (by georeference), or of the
    source raster's tile grid for tiles without one."""
    boxes = [_mercator_box(t.record) if t.record.get("bounds") and t.record.get("crs") else None
             for t in tiles]
    widths = [b[2] for b in boxes if b]
    edge = block * float(np.median(widths)) if widths else 0.0
    keys = []
    for t, box in zip(tiles, boxes, strict=True):
        if box:
            keys.append(("geo", math.floor(box[0] / edge), math.floor(box[1] / edge)))
        else:
            r = t.record
            keys.append(("grid", r.get("source", str(t.path.parent)), r["row"] // block,
                         r["col"] // block))
    return keys


def assign_splits(keys: list[tuple], val: float, test: float, seed: int = 0) -> dict[tuple, str]:
    """Blocks in a seeded random order fill test, then val, up to their share of the tiles."""
    if val < 0 or test < 0 or val + test >= 1:
        raise AerocolorError(f"--val {val} and --test {test}: each >= 0 and together below 1")
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    order = sorted(counts, key=repr)
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    goals = {"test": test * len(keys), "val": val * len(keys)}
    filled = {"test": 0, "val": 0}
    split = {}
    for k in order:
        name = next((s for s in ("test", "val") if goals[s] > 0 and filled[s] < goals[s]), "train")
        split[k] = name
        filled[name] = filled.get(name, 0) + counts[k]
    return split


def _tile_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _copy(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def _write_color(tile: Tile, split: str, out: Path, ageing: Ageing | None, aligned: bool) -> None:
    rgb = as_rgb(read_image(tile.path))
    gray = (age_image(rgb, _tile_rng(ageing.seed, tile.name), ageing) if ageing
            else to_numpy(gray_from_rgb(to_tensor(rgb))))
    write_image(out / "paired" / split / "color" / f"{tile.name}.png", rgb)
    write_image(out / "paired" / split / "gray" / f"{tile.name}.png", gray)
    if aligned:
        write_image(out / "aligned" / split / f"{tile.name}.png",
                    np.concatenate([as_rgb(gray), rgb], axis=1))


PREPARED = ("paired", "aligned", "unpaired", "splits.csv")  # what prepare writes under OUT


def clear_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that already holds a prepared dataset (a second split into it would leave
    tiles of the first in other splits), or, with ``overwrite``, remove that dataset first."""
    found = [out / name for name in PREPARED if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        raise AerocolorError(
            f"--out {out}: already holds a prepared dataset ({', '.join(p.name for p in found)}); "
            "preparing into it again would mix two splits. Give a new --out, or --overwrite to replace it")
    for p in found:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def split_warnings(counts: dict[str, dict[str, int]], val: float, test: float, blocks: int,
                   block: int) -> list[str]:
    """What a user should know about the split: empty splits, and why."""
    notes = []
    for kind, per_split in counts.items():
        if not sum(per_split.values()):
            continue
        wanted = {"train": True, "val": val > 0, "test": test > 0}
        empty = [s for s in SPLITS if wanted[s] and per_split[s] == 0]
        if empty:
            notes.append(f"{kind}: no tiles in {' or '.join(empty)}: the {blocks} block(s) of "
                         f"{block} x {block} tiles are too few to split; give a smaller --block or "
                         "more tiles")
    return notes


def prepare(color: list[str | Path], old: list[str | Path], out: str | Path, val: float = 0.1,
            test: float = 0.1, block: int = 8, seed: int = 0, ageing: Ageing | None = None,
            aligned: bool = False, overwrite: bool = False) -> dict[str, dict[str, int]]:
    """Write the paired, aligned and unpaired folders; returns tile counts per set and split.
    ``counts["warnings"]`` lists empty splits."""
    out = Path(out)
    if block < 1:
        raise AerocolorError(f"--block {block}: must be at least 1 (tiles per block side)")
    output_folder(out)
    sets = {"color": [t for f in color for t in read_tiles(f)],
            "old": [t for f in old for t in read_tiles(f)]}
    if not sets["color"] and not sets["old"]:
        raise AerocolorError("nothing to prepare: give --color and/or --old tile folders")
    clear_output(out, overwrite)
    everything = sets["color"] + sets["old"]
    kinds = ["color"] * len(sets["color"]) + ["old"] * len(sets["old"])
    keys = block_keys(everything, block)
    split_of = assign_splits(keys, val, test, seed)
    counts = {s: dict.fromkeys(SPLITS, 0) for s in sets}
    rows = []
    for tile, kind, key in zip(everything, kinds, keys, strict=True):
        split = split_of[key]
        counts[kind][split] += 1
        rows.append((kind, tile.name, split, "_".join(map(str, key))))
        if kind == "color":
            _write_color(tile, split, out, ageing, aligned)
            if sets["old"]:
                _copy(tile.path, out / "unpaired" / f"{split}B" / f"{tile.name}{tile.path.suffix}")
        else:
            _copy(tile.path, out / "unpaired" / f"{split}A" / f"{tile.name}{tile.path.suffix}")

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["set", "name", "split", "block"])
            w.writerows(rows)

    atomic_write(out / "splits.csv", write)
    return counts | {"warnings": split_warnings(counts, val, test, len(set(keys)), block)}
