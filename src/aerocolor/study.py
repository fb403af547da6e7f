"""A study: a grid of methods x options, each trained for a budget, then evaluated on gray
versions of colour photos and on real old photos, into one results table.

A study YAML holds ``base`` (config values for every run), ``steps`` (the training budget),
``evaluate`` (the evaluation sets and options) and ``methods``: for each method label, the
registered ``method`` (default: the label), an optional preset ``config`` YAML, ``set`` (values for
all its variants) and ``variants`` (name -> values). Values are nested sections or dotted keys
(``model.nets.ngf: 128``). Run ``LABEL-VARIANT`` trains into ``OUT/runs/LABEL-VARIANT``.

Resuming: a run with ``evaluation.json`` for the same config is finished and kept; any other run
continues training from its ``last.pt`` (the trainer resumes exactly), then is evaluated.
"""

from __future__ import annotations

import copy
import csv
import html
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import Config, apply_overrides, build_config, read_yaml_mapping
from .errors import ConfigError
from .evaluate import EvalOptions, Scorer, evaluate_model, fmt, write_report
from .imageio import atomic_write
from .infer import load_colorizer
from .methods import get_method
from .plots import plot_loss_curves
from .train import BEST, LAST, train

RESULT = "evaluation.json"
# the config sections that define a run's result (not where or on which device it ran)
RESULT_DEFINING = ("model", "data", "optim")
# the research's table: per input, these columns (label, report key)
TABLE_COLUMNS = {
    "gray": [("FID", "fid"), ("KID", "kid_mean"), ("IS max", "is_max"), ("IS mean", "is_mean"),
             ("CIEDE2000", "ciede2000"), ("PSNR", "psnr"), ("SSIM", "ssim")],
    "old": [("FID", "fid"), ("KID", "kid_mean"), ("IS max", "is_max"), ("IS mean", "is_mean")],
}
INPUT_TITLES = {"gray": "gray-processed", "old": "real old photos"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluateSpec(_Strict):
    data: list[str] = Field(default_factory=list, description="colour photos, inputs in gray")
    old: list[str] = Field(default_factory=list, description="real old gray photos")
    reference: list[str] = Field(default_factory=list, description="colour set for the old photos")
    max_images: int = 0
    batch_size: int = 32
    samples: int = 3
    device: str = "auto"
    fid_network: str | None = None
    inception_weights: str | None = None
    download: bool = True
    kid_subset_size: int = 1000


class MethodGrid(_Strict):
    method: str | None = None
    config: str | None = Field(None, description="preset config YAML (path from the working dir)")
    set: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"default": {}})


class StudySpec(_Strict):
    name: str = "study"
    out_dir: str = "runs/study"
    steps: int | None = Field(None, description="training steps per run (default: config epochs)")
    base: dict[str, Any] = Field(default_factory=dict)
    evaluate: EvaluateSpec = EvaluateSpec()
    methods: dict[str, MethodGrid]


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (nested sections are kept as they are)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        merge(node, {leaf: value})
    return out


def merge(into: dict, extra: dict) -> dict:
    """Deep-merge ``extra`` into ``into`` (sections merge, values replace)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudySpec:
    path = Path(path)
    data = apply_overrides(read_yaml_mapping(path, "study file", "configs/studies/"), overrides or [])
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        msg = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"{path}: invalid study ({msg})") from None


def study_runs(spec: StudySpec) -> dict[str, Config]:
    """Every run of the grid: name -> its full config (validated, method known)."""
    runs: dict[str, Config] = {}
    for label, grid in spec.methods.items():
        preset = read_yaml_mapping(Path(grid.config), "preset config", "configs/") if grid.config else {}
        for variant, values in grid.variants.items():
            name = f"{label}-{variant}"
            data = merge(merge(copy.deepcopy(preset), nested(spec.base)), nested(grid.set))
            merge(data, nested(values or {}))
            merge(data, {"model": {"method": grid.method or label},
                         "train": {"out_dir": str(Path(spec.out_dir) / "runs" / name)}})
            if spec.steps is not None:
                merge(data, {"optim": {"max_steps": spec.steps}})
            cfg = build_config(data, f"{spec.name}: run {name}")
            get_method(cfg.model.method)
            runs[name] = cfg
    return runs


def eval_options(spec: StudySpec, run_dir: Path, progress: bool = False) -> EvalOptions:
    e = spec.evaluate
    return EvalOptions(
        max_images=e.max_images, batch_size=e.batch_size, device=e.device,
        fid_network=e.fid_network, inception_weights=e.inception_weights, download=e.download,
        cache_dir=str(Path(spec.out_dir) / "cache"), kid_subset_size=e.kid_subset_size,
        samples=e.samples, samples_dir=str(run_dir / "samples"), progress=progress,
    )


def finished_report(run_dir: Path, cfg: Config, spec: StudySpec) -> dict | None:
    """The saved evaluation of a finished run, or None (also when the evaluation settings
    changed: the trained run is then evaluated again); a run trained with another config is
    an error, so an edited study never mixes old and new results silently."""
    path = run_dir / RESULT
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    saved, now = report.get("config", {}), json.loads(json.dumps(cfg.model_dump()))
    if any(saved.get(k) != now[k] for k in RESULT_DEFINING):
        raise ConfigError(f"{run_dir}: trained with another config than the study now gives; "
                          "delete that run folder or rename the variant")
    return report if report.get("evaluation") == spec.evaluate.model_dump() else None


def run_one(name: str, cfg: Config, spec: StudySpec, scorer: Scorer | None, progress: bool,
            log: Callable[[str], None]) -> dict:
    run_dir = Path(cfg.train.out_dir)
    if (report := finished_report(run_dir, cfg, spec)) is not None:
        log(f"{name}: finished earlier, kept")
        return report
    log(f"{name}: training ({cfg.model.method}, {cfg.optim.max_steps or 'config'} steps)")
    train(cfg, resume=True, progress=progress)
    if (run_dir / "losses.csv").is_file():
        plot_loss_curves(run_dir, run_dir / "losses.png")
    # best.pt is chosen by validation; without validation the last weights are the result
    ckpt = run_dir / (BEST if cfg.data.val and (run_dir / BEST).is_file() else LAST)
    log(f"{name}: evaluating {ckpt.name}")
    e = spec.evaluate
    report = evaluate_model(load_colorizer(ckpt, e.device), e.data or None, e.old or None,
                            e.reference or None, eval_options(spec, run_dir, progress), scorer)
    report["config"], report["evaluation"] = cfg.model_dump(), spec.evaluate.model_dump()
    write_report(report, run_dir)
    return json.loads((run_dir / RESULT).read_text())


def run_study(path: str | Path, overrides: list[str] | None = None, progress: bool = True,
              log: Callable[[str], None] = print, only: list[str] | None = None) -> list[Path]:
    """Train and evaluate every run of a study (skipping finished ones), or the runs named in
    ``only``; write the tables of the runs done."""
    spec = load_study(path, overrides)
    runs = study_runs(spec)
    if only:
        unknown = sorted(set(only) - set(runs))
        if unknown:
            raise ConfigError(f"{path}: no run named {', '.join(unknown)}: choose from {', '.join(runs)}")
        runs = {name: cfg for name, cfg in runs.items() if name in only}
    if not spec.evaluate.data and not spec.evaluate.old:
        raise ConfigError(f"{path}: evaluate.data or evaluate.old must name image folders")
    scorer = None
    reports = {}
    for name, cfg in runs.items():
        if scorer is None and finished_report(Path(cfg.train.out_dir), cfg, spec) is None:
            # one scorer (FID network, classifier weights) for every run that needs evaluating
            scorer = Scorer.from_options(eval_options(spec, Path(spec.out_dir)))
        reports[name] = run_one(name, cfg, spec, scorer, progress, log)
    return write_tables(spec, reports)


# ---- the results table ----------------------------------------------------------------------


def table_rows(reports: dict[str, dict]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (run, method, then each input's columns) of the results table."""
    header = ["run", "method"]
    header += [f"{INPUT_TITLES[k]} {label}"
               for k, cols in TABLE_COLUMNS.items() for label, _ in cols]
    rows = []
    for name, rep in reports.items():
        row: list[Any] = [name, rep["method"]]
        for k, cols in TABLE_COLUMNS.items():
            row += [rep.get(k, {}).get(key) for _, key in cols]
        rows.append(row)
    return header, rows


def _cell(value: Any, label: str) -> str:
    if isinstance(value, str):
        return value
    return fmt(value, 4 if label.endswith("KID") else 3)


def results_markdown(spec: StudySpec, reports: dict[str, dict]) -> str:
    header, rows = table_rows(reports)
    lines = [f"# Study {spec.name}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, h) for v, h in zip(row, header, strict=True)) + " |"
              for row in rows]
    notes = sorted({n for rep in reports.values() for n in rep.get("notes", [])})
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]).rstrip() + "\n"


def results_csv(reports: dict[str, dict]) -> str:
    header, rows = table_rows(reports)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buf.getvalue()


def _rel(path: str | Path, start: Path) -> str:
    return html.escape(Path(os.path.relpath(Path(path).resolve(), start.resolve())).as_posix())


def results_html(spec: StudySpec, reports: dict[str, dict], out: Path) -> str:
    """The table with a two-level header (input, metric), then per run its samples
    (gray input | output | truth) and loss curves."""
    header, rows = table_rows(reports)
    top = '<th rowspan="2">run</th><th rowspan="2">method</th>' + "".join(
        f'<th colspan="{len(cols)}">{INPUT_TITLES[k]}</th>' for k, cols in TABLE_COLUMNS.items())
    sub = "".join(f"<th>{label}</th>" for cols in TABLE_COLUMNS.values() for label, _ in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v, h))}</td>"
                         for v, h in zip(row, header, strict=True)) + "</tr>"
        for row in rows)
    sections = []
    for name, rep in reports.items():
        run_dir = Path(spec.out_dir) / "runs" / name
        imgs = [s for k in TABLE_COLUMNS for s in rep.get(k, {}).get("samples", [])]
        if (run_dir / "losses.png").is_file():
            imgs.append(str(run_dir / "losses.png"))
        tags = "".join(f'<img src="{_rel(p, out.parent)}" alt="{html.escape(Path(p).stem)}">'
                       for p in imgs)
        sections.append(f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>'
                        f"<p>gray input | output | truth (old photos: input | output); "
                        f"loss curves</p>{tags}</section>")
    notes = sorted({n for rep in reports.values() for n in rep.get("notes", [])})
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}"
             "img{max-width:100%;display:block;margin:6px 0}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>Study "
            f"{html.escape(spec.name)}</title><style>{style}</style></head><body>"
            f"<h1>Study {html.escape(spec.name)}</h1><table><thead><tr>{top}</tr><tr>{sub}</tr>"
            f"</thead><tbody>{body}</tbody></table>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
            + "".join(sections) + "</body></html>\n")


def write_tables(spec: StudySpec, reports: dict[str, dict]) -> list[Path]:
    """results.md, results.csv and results.html in the study folder, written atomically."""
    out = Path(spec.out_dir)
    texts = {"results.md": results_markdown(spec, reports), "results.csv": results_csv(reports),
             "results.html": results_html(spec, reports, out / "results.html")}
    return [atomic_write(out / name, lambda tmp, t=text: Path(tmp).write_text(t))
            for name, text in texts.items()]
