"""One archive job: plan (what the manifest proves done), optional shared statistics per group,
colorize on an engine with one overall progress bar, then catalogue the results."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import __version__
from ..errors import AerocolorError
from ..imageio import remove_orphaned_temps
from ..infer.colorizer import NORM_SAMPLE_PIXELS, NORM_SAMPLE_SIDE, spread_sample
from ..infer.raster import is_raster, open_raster
from .catalog import MOSAIC_NAME, write_mosaic, write_stac
from .engines import LocalEngine, RayEngine
from .manifest import Manifest, file_sha256, input_signature, job_key, verified
from .worker import WorkSpec

ENGINES = ("local", "ray")
GROUP_BLOCKS = NORM_SAMPLE_PIXELS // NORM_SAMPLE_SIDE**2  # blocks a group's statistics pool over


@dataclass(frozen=True)
class ArchiveOptions:
    """How a job runs (the worker's :class:`WorkSpec` says what it makes)."""

    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None  # Ray actors (default: one per CPU of the cluster)
    worker_gpus: float = 0  # GPUs per Ray actor (e.g. 1, or 0.5 to put two on a GPU)
    consistent: bool = False
    group_by: str = "folder"  # folder, all, or a regular expression (its first group) on the path
    progress: bool = True


@dataclass
class JobSummary:
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    megapixels: float = 0.0
    seconds: float = 0.0
    lost: int = 0  # calls resubmitted because their worker process died
    startup: float = 0.0  # seconds to start the engine (Ray, workers, models)
    engine: str = "local"
    workers: int = 1
    mosaic: Path | None = None
    stac: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.megapixels / self.seconds if self.seconds else 0.0
        out = [f"{len(self.done)} done, {len(self.skipped)} skipped (verified by the manifest), "
               f"{len(self.failed)} failed of {self.total} inputs; {self.megapixels:.1f} MP in "
               f"{self.seconds:.1f} s ({rate:.2f} MP/s) on {self.engine} with {self.workers} "
               f"worker{'s' if self.workers != 1 else ''} (started in {self.startup:.1f} s)"]
        if self.lost:
            out.append(f"{self.lost} calls redone after their worker process died")
        out += [f"failed: {path}: {reason}" for path, reason in self.failed.items()]
        if self.mosaic is not None:
            out.append(f"mosaic: {self.mosaic}")
        if self.stac:
            out.append(f"STAC items: {len(self.stac)} in {self.stac[0].parent}")
        return out


def group_key(path: Path, group_by: str) -> str:
    """The group an input shares statistics with: its folder, one group for all, or the first
    group (else the whole match) of a regular expression searched in its path."""
    if group_by == "folder":
        return str(path.parent)
    if group_by == "all":
        return "all"
    try:
        pattern = re.compile(group_by)
    except re.error as e:
        raise AerocolorError(f"--group-by {group_by!r}: not a regular expression ({e}); "
                             "give folder, all or a pattern such as 'flight_\\d+'") from None
    m = pattern.search(path.as_posix())
    if m is None:
        raise AerocolorError(f"--group-by {group_by!r}: {path} does not match; give a pattern every "
                             "input matches, or --group-by folder")
    return m.group(1) if pattern.groups else m.group(0)


def input_megapixels(path: Path) -> float:
    """Pixels of an input in millions, from its header (0 when it cannot be read: the worker
    will report why)."""
    try:
        if is_raster(path):
            with open_raster(path) as src:
                return src.width * src.height / 1e6
        with Image.open(path) as im:
            return im.width * im.height / 1e6
    except Exception:  # any unreadable input is reported by the worker that tries it
        return 0.0


def job_options(spec: WorkSpec, opts: ArchiveOptions) -> dict:
    """The options that decide the output bytes (recorded in the manifest and STAC items)."""
    return {"raster": asdict(spec.raster), "compare": spec.compare, "samples": spec.samples,
            "style": str(spec.style) if spec.style else None, "seed": spec.seed, "suffix": spec.suffix,
            "backend": spec.backend, "consistent": opts.consistent,
            "group_by": opts.group_by if opts.consistent else None,
            # only when given: the model's own value is covered by its checksum
            **({"chroma": spec.chroma} if spec.chroma is not None else {}),
            **({"precision": spec.precision} if spec.precision != "auto" else {})}


def model_path(spec: WorkSpec) -> Path:
    from ..infer import default_model_path

    return Path(spec.model) if spec.model is not None else default_model_path()


def sample_plan(members: list[Path]) -> list[tuple[Path, int]]:
    """(input, blocks) that a group's statistics come from: GROUP_BLOCKS in all, spread over its
    inputs (one each from inputs spread across a group larger than that)."""
    if len(members) >= GROUP_BLOCKS:
        return [(p, 1) for p in spread_sample(members, GROUP_BLOCKS)]
    return [(p, GROUP_BLOCKS // len(members)) for p in members]


def make_engine(spec: WorkSpec, opts: ArchiveOptions):
    if opts.engine not in ENGINES:
        raise AerocolorError(f"--engine {opts.engine!r}: choose {' or '.join(ENGINES)}")
    if opts.engine == "local":
        return LocalEngine(spec)
    return RayEngine(spec, opts.ray_address, opts.workers, gpus_per_worker=opts.worker_gpus)


def run_archive(files: list[Path], spec: WorkSpec, opts: ArchiveOptions = ArchiveOptions(), warn=print,
                on_record=None) -> JobSummary:
    """Colorize ``files`` into ``spec.out_dir`` as one job (see the module docstring);
    ``on_record`` is called with each manifest record as it is written."""
    start = time.perf_counter()
    # absolute paths: Ray workers do not share this process's working directory
    files = [Path(p).absolute() for p in files]
    spec = replace(spec, out_dir=Path(spec.out_dir).absolute(),
                   model=Path(spec.model).absolute() if spec.model else None,
                   style=Path(spec.style).absolute() if spec.style else None)
    out_dir = spec.out_dir
    manifest = Manifest(out_dir)
    summary = JobSummary(total=len(files), engine=opts.engine)
    groups: dict[str, list[Path]] = {}
    for p in files:
        groups.setdefault(group_key(p, opts.group_by) if opts.consistent else "", []).append(p)
    group_of = {p: g for g, members in groups.items() for p in members}
    options = job_options(spec, opts)
    model_file = model_path(spec)
    model = {"name": model_file.stem, "file": str(model_file), "sha256": file_sha256(model_file)}
    signatures = {g: job_key({str(p): input_signature(p) for p in members}) if opts.consistent else None
                  for g, members in groups.items()}
    keys = {g: job_key({"model": model["sha256"], "options": options, "group": signatures[g]}) for g in groups}
    previous = manifest.latest()
    todo = []
    for p in files:
        if verified(previous.get(str(p)), keys[group_of[p]], p, out_dir):
            summary.skipped.append(str(p))
        else:
            todo.append(p)
    sizes = {p: input_megapixels(p) for p in todo}
    records: list[dict] = []
    if todo:
        engine = make_engine(spec, opts)
        summary.startup = time.perf_counter() - start
        summary.workers = engine.workers
        try:
            model.update(engine_model_info(engine))
            stats = group_statistics(engine, groups, set(todo), spec.raster.percentiles) if opts.consistent else {}
            bar = tqdm(total=sum(sizes.values()), unit="MP", desc="colorize", disable=not opts.progress,
                       bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} MP [{elapsed}<{remaining}, "
                                  "{rate_fmt}{postfix}]")

            def finished(path: Path, result: dict | None, error: str | None) -> None:
                result = result or {"input": str(path), "status": "failed", "error": error}
                group = group_of[path]
                record = {**result, "job": keys[group], "source": input_signature(path), "model": model,
                          "options": options, "engine": opts.engine, "aerocolor": __version__,
                          "group": {"name": group, "signature": signatures[group]} if opts.consistent else None,
                          "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                manifest.append(record)
                records.append(record)
                for line in record.get("warnings", []):
                    bar.write(f"warning: {line}", file=sys.stderr)
                if record["status"] == "done":
                    summary.done.append(str(path))
                else:
                    summary.failed[str(path)] = record.get("error", "unknown error")
                bar.update(sizes[path])
                bar.set_postfix_str(f"{len(records)}/{len(todo)} files")
                if on_record is not None:
                    on_record(record)

            with bar:
                engine.run("colorize", [(p, (str(p), *stats.get(group_of[p], (None, None)))) for p in todo],
                           finished)
        finally:
            summary.lost = engine.lost
            engine.close()
        summary.megapixels = sum(sizes[Path(r["input"])] for r in records if r["status"] == "done")
    remove_orphaned_temps(out_dir)  # of workers killed while writing
    catalogue(out_dir, files, manifest.latest(), summary, warn)
    summary.seconds = time.perf_counter() - start
    return summary


def engine_model_info(engine) -> dict:
    info: dict = {}
    engine.run("model_info", [(None, ())], lambda _, value, error: info.update(value or {}))
    return info


def group_statistics(engine, groups: dict[str, list[Path]], todo: set[Path], percentiles: tuple[float, float]
                     ) -> dict[str, tuple]:
    """Pass 1: per group with work to do, (shared whole-input statistics as an engine-shared ref,
    shared stretch or None), from inputs spread across the whole group (done ones too, so a rerun
    gets the same): raw values for the percentile stretch of inputs deeper than 8 bits, then gray
    blocks read with that stretch, pooled as if the group were one image."""
    plans = {g: sample_plan(members) for g, members in groups.items() if todo & set(members)}
    keys = [(g, i, p, n) for g, plan in plans.items() for i, (p, n) in enumerate(plan)]
    values: dict[tuple[str, int], object] = {}
    engine.run("values", [((g, i), (str(p),)) for g, i, p, _ in keys],
               lambda key, value, error: values.__setitem__(key, value))
    ranges = {}
    for g, plan in plans.items():
        arrays = [values[(g, i)] for i in range(len(plan)) if values.get((g, i)) is not None]
        lo, hi = np.percentile(np.concatenate(arrays), percentiles) if arrays else (None, None)
        ranges[g] = (float(lo), float(max(hi, lo + 1e-6))) if arrays else None
    blocks: dict[tuple[str, int], list] = {}
    engine.run("sample", [((g, i), (str(p), n, ranges[g])) for g, i, p, n in keys],
               lambda key, value, error: blocks.__setitem__(key, value or []))
    pooled: dict[str, object] = {}
    engine.run("group_stats",
               [(g, ([b for i in range(len(plan)) for b in blocks[(g, i)]],)) for g, plan in plans.items()],
               lambda g, value, error: pooled.__setitem__(g, value))
    return {g: (engine.share(pooled.get(g)), ranges[g]) for g in plans}


def catalogue(out_dir: Path, files: list[Path], records: dict[str, dict], summary: JobSummary, warn) -> None:
    """Rewrite ``mosaic.vrt`` and the STAC items from the manifest's done outputs of these inputs."""
    entries = []
    for p in files:
        record = records.get(str(p))
        if record and record.get("status") == "done":
            entries += [(out_dir / o["path"], p, record) for o in record["outputs"] if o.get("role") != "preview"]
    if not entries:
        return
    tifs = [o for o, _, _ in entries if o.suffix.lower() in (".tif", ".tiff")]
    summary.mosaic = write_mosaic(out_dir / MOSAIC_NAME, tifs, warn) if tifs else None
    summary.stac = write_stac(out_dir, [(o, p, r["model"], r["options"]) for o, p, r in entries])
