"""Harvesting tiles from a map service: a bounded pool of downloads with retries, backoff and a
rate limit; every tile verified as a decodable image and written atomically; resumable from the
files and the manifest already in the output folder."""

from __future__ import annotations

import csv
import io
import itertools
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import requests
import shapely
from PIL import Image
from shapely.geometry.base import BaseGeometry

from ..errors import AerocolorError
from ..imageio import atomic_write
from .area import Area, AreaError
from .manifest import ManifestLog, read_manifest, write_manifest
from .sources import Layer, TileMatrix

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
ABSENT_STATUS = {204, 404}  # services answer these for tiles outside their coverage
SKIPPED = ("blank", "missing")
NOMINAL_TILE_BYTES = {"jpg": 25_000, "webp": 20_000}
RETRYABLE = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
             requests.exceptions.ContentDecodingError)


@dataclass(frozen=True)
class TileJob:
    layer: Layer
    matrix: TileMatrix
    row: int
    col: int

    @property
    def rel_path(self) -> str:
        return f"{self.matrix.identifier}/{self.row}/{self.col}.{self.layer.suffix}"

    @property
    def url(self) -> str:
        return self.layer.tile_url(self.matrix, self.row, self.col)

    def record(self, status: str, **extra) -> dict:
        return {"path": self.rel_path, "layer": self.layer.name, "matrix": self.matrix.identifier,
                "row": self.row, "col": self.col, "crs": self.matrix.crs,
                "bounds": list(self.matrix.tile_bounds(self.row, self.col)), "status": status,
                **extra}


@dataclass
class HarvestResult:
    planned: int = 0
    fetched: int = 0
    kept: int = 0
    blank: int = 0
    missing: int = 0
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.planned} tiles: {self.fetched} fetched ({self.bytes / 1e6:.1f} MB), "
                f"{self.kept} already here, {self.blank} blank, {self.missing} absent, "
                f"{len(self.failed)} failed")


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one matrix that share area with an area of interest. They are counted and
    listed row by row from the matrix's index ranges, never held in a list, so memory stays flat
    and a rectangle of any size (the whole world at zoom 24) is counted at once."""

    layer: Layer
    matrix: TileMatrix
    geometry: BaseGeometry  # the area in the matrix's CRS
    rows: tuple[int, int]  # inclusive
    cols: tuple[int, int]

    @cached_property
    def rectangle(self) -> bool:
        """True when the area fills its bounding box, so every tile in the ranges is planned."""
        box = shapely.box(*self.geometry.bounds)
        return abs(box.area - self.geometry.area) <= 1e-9 * box.area

    def spans(self) -> Iterator[tuple[int, int, int]]:
        """(row, first column, last column) of each run of planned tiles, row by row."""
        (r0, r1), (c0, c1) = self.rows, self.cols
        for row in range(r0, r1 + 1) if c0 <= c1 else ():
            for a, b in [(c0, c1)] if self.rectangle else self._runs_in_row(row):
                yield row, a, b

    def _runs_in_row(self, row: int) -> list[list[int]]:
        """[first, last] column of each run of tiles in ``row`` that share area with the area:
        each connected piece of the area within the row covers one contiguous run."""
        left, _, right, _ = self.geometry.bounds
        _, bottom, _, top = self.matrix.tile_bounds(row, 0)
        strip = self.geometry.intersection(shapely.box(left, bottom, right, top))
        pieces = sorted(self.matrix.tile_range(piece.bounds)[2:]
                        for piece in getattr(strip, "geoms", [strip]) if piece.area > 0)
        runs: list[list[int]] = []
        for a, b in pieces:
            if runs and a <= runs[-1][1] + 1:
                runs[-1][1] = max(runs[-1][1], b)
            elif a <= b:
                runs.append([a, b])
        return runs

    @cached_property
    def count(self) -> int:
        (r0, r1), (c0, c1) = self.rows, self.cols
        if self.rectangle:
            return max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
        return sum(b - a + 1 for _, a, b in self.spans())

    def __iter__(self) -> Iterator[TileJob]:
        for row, a, b in self.spans():
            for col in range(a, b + 1):
                yield TileJob(self.layer, self.matrix, row, col)

    def job_at(self, index: int) -> TileJob:
        """The ``index``-th planned tile (arithmetic for a rectangle)."""
        if self.rectangle:
            width = self.cols[1] - self.cols[0] + 1
            return TileJob(self.layer, self.matrix, self.rows[0] + index // width,
                           self.cols[0] + index % width)
        for row, a, b in self.spans():
            if index <= b - a:
                return TileJob(self.layer, self.matrix, row, a + index)
            index -= b - a + 1
        raise IndexError(index)


def plan_tiles(layer: Layer, matrix: TileMatrix, area: Area) -> TilePlan:
    """The tiles of ``matrix`` that share area with ``area``, row by row."""
    outside = AreaError(f"{area.label} lies outside layer {layer.name!r} at zoom "
                        f"{matrix.identifier}{_extent_hint(layer)}: give an area inside it")
    lonlat = layer.wgs84_bounds and shapely.box(*layer.wgs84_bounds)
    if lonlat and not area.to_crs("EPSG:4326").intersects(lonlat):
        raise outside
    geom = area.to_crs(matrix.crs)
    r0, r1, c0, c1 = matrix.tile_range(geom.bounds)
    plan = TilePlan(layer, matrix, geom, (r0, r1), (c0, c1))
    if not plan.count:
        raise outside
    return plan


def nth_job(plans: list[TilePlan], index: int = 0) -> TileJob:
    """The ``index``-th tile of several plans taken one after the other."""
    for plan in plans:
        if index < plan.count:
            return plan.job_at(index)
        index -= plan.count
    raise IndexError(index)


def check_plan_size(plans: list[TilePlan], max_tiles: int) -> int:
    """The plans' tile count; a plan above ``max_tiles`` is refused before anything is fetched."""
    if max_tiles < 1:
        raise AerocolorError(f"--max-tiles {max_tiles}: give a positive tile count")
    total = sum(p.count for p in plans)
    if total > max_tiles:
        raise AerocolorError(
            f"the area holds {total:,} tiles, more than --max-tiles {max_tiles:,}: give a smaller "
            f"area or a coarser --zoom, or raise --max-tiles to {total} if you mean it")
    return total


def _extent_hint(layer: Layer) -> str:
    if not layer.wgs84_bounds:
        return ""
    return " (its lon/lat extent is " + ",".join(f"{v:.5f}" for v in layer.wgs84_bounds) + ")"


def decode_tile(data: bytes) -> np.ndarray:
    """Decode a tile fully (a truncated body fails here); RGBA when it has transparency."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def is_blank(img: np.ndarray) -> bool:
    """Fully transparent, or a single colour everywhere (a no-data tile)."""
    if img.shape[2] == 4 and img[:, :, 3].max() == 0:
        return True
    flat = img.reshape(-1, img.shape[2])
    return bool((flat == flat[0]).all())


def tile_is_valid(path: Path) -> bool:
    try:
        decode_tile(path.read_bytes())
        return True
    except (OSError, ValueError, SyntaxError):
        return False


class RateLimit:
    """At most ``per_second`` request starts per second across all threads (None: no limit)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


@dataclass
class Fetcher:
    """Downloads one tile with retries and exponential backoff (with jitter)."""

    session: requests.Session
    limit: RateLimit
    timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5

    def fetch(self, url: str) -> tuple[str, bytes | None, str]:
        """('ok' | 'blank' | 'missing' | 'failed', body, reason)."""
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(60.0, self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)))
            self.limit.wait()
            try:
                r = self.session.get(url, timeout=self.timeout)
                body = r.content
            except RETRYABLE as e:
                reason = type(e).__name__
                continue
            if r.status_code in ABSENT_STATUS:
                return "missing", None, f"HTTP {r.status_code}"
            if r.status_code in RETRY_STATUS:
                reason = f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                return "failed", None, f"HTTP {r.status_code}"
            try:
                img = decode_tile(body)
            except (OSError, ValueError, SyntaxError):
                reason = f"not a decodable image ({len(body)} bytes)"
                continue
            return ("blank" if is_blank(img) else "ok"), body, ""
        return "failed", None, f"{reason} after {self.retries + 1} tries"


def harvest(plans: list[TilePlan], out_dir: str | Path, fetcher: Fetcher, workers: int = 4,
            progress: bool = True) -> HarvestResult:
    """Fetch what is missing or broken under ``out_dir/<layer>/``; record every tile."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    layers = sorted({p.layer.name for p in plans})
    known = {name: read_manifest(out_dir / name) for name in layers}
    logs = {name: ManifestLog(out_dir / name) for name in layers}
    result = HarvestResult(planned=sum(p.count for p in plans))
    bar = tqdm(total=result.planned, unit="tile", disable=not progress, desc="fetch")

    def work(job: TileJob) -> tuple[TileJob, str, int, str]:
        path = out_dir / job.layer.name / job.rel_path
        if known[job.layer.name].get(job.rel_path, {}).get("status") in SKIPPED:
            return job, "known", 0, ""
        if path.is_file() and tile_is_valid(path):
            return job, "kept", path.stat().st_size, ""
        status, body, reason = fetcher.fetch(job.url)
        if status == "ok":
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(body))
        return job, status, len(body or b""), reason

    def record(job: TileJob, status: str, size: int, reason: str) -> None:
        previous = known[job.layer.name].get(job.rel_path, {})
        if status == "known":
            setattr(result, previous["status"], getattr(result, previous["status"]) + 1)
        elif status == "kept":
            result.kept += 1
            if previous.get("status") != "ok":
                logs[job.layer.name].append(job.record("ok", bytes=size))
        else:
            if status == "failed":
                result.failed[f"{job.layer.name}/{job.rel_path}"] = reason
            elif status == "ok":
                result.fetched += 1
                result.bytes += size
            else:
                setattr(result, status, getattr(result, status) + 1)
            extra = {"bytes": size} if status == "ok" else {"reason": reason} if reason else {}
            logs[job.layer.name].append(job.record(status, **extra))
        bar.update(1)
        bar.set_postfix(new=result.fetched, blank=result.blank, failed=len(result.failed))

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: set = set()
            for job in itertools.chain.from_iterable(plans):
                if len(pending) >= 4 * workers:  # bounded queue: memory stays flat on huge areas
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in done:
                        record(*f.result())
                pending.add(pool.submit(work, job))
            for f in pending:
                record(*f.result())
    finally:
        bar.close()
        for name, log in logs.items():
            log.close()
            write_manifest(out_dir / name, read_manifest(out_dir / name))
    return result


def estimate_tile_bytes(plans: list[TilePlan], fetcher: Fetcher, samples: int = 3) -> float:
    """Mean size of a few sample tiles spread over the plans (a nominal size if none answer)."""
    total = sum(p.count for p in plans)
    sizes = []
    for index in sorted({int(i) for i in np.linspace(0, total - 1, min(samples, total))}):
        _, body, _ = fetcher.fetch(nth_job(plans, index).url)
        if body:
            sizes.append(len(body))
    return float(np.mean(sizes)) if sizes else NOMINAL_TILE_BYTES.get(plans[0].layer.suffix, 100_000)


def write_pairs(out_dir: str | Path, layer_a: str, layer_b: str) -> tuple[Path, int]:
    """``pairs.csv``: the tiles present in both layers (same matrix, row and column)."""
    out_dir = Path(out_dir)
    a, b = read_manifest(out_dir / layer_a), read_manifest(out_dir / layer_b)
    by_cell = {(r["matrix"], r["row"], r["col"]): r for r in b.values() if r["status"] == "ok"}
    rows = [(ra["matrix"], ra["row"], ra["col"], f"{layer_a}/{ra['path']}",
             f"{layer_b}/{by_cell[k]['path']}")
            for ra in a.values() if ra["status"] == "ok"
            and (k := (ra["matrix"], ra["row"], ra["col"])) in by_cell]
    rows.sort()

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["matrix", "row", "col", layer_a, layer_b])
            w.writerows(rows)

    return atomic_write(out_dir / "pairs.csv", write), len(rows)
