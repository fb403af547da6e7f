"""Evaluating a colorization model: paired colour metrics and distribution metrics.

Two kinds of input, as in the research:

- ``gray``: gray versions of colour photos, colorized and compared with their colour truth
  (PSNR, SSIM, mean CIEDE2000, colourfulness, ab-histogram distance; pure-black no-data pixels
  of the truth are left out), and their distribution compared with the truths' (FID, KID, IS);
- ``old``: real old gray photos, colorized; their distribution is compared with a reference set
  of colour photos (FID, KID, IS).

FID and KID use the standard FID Inception network's pool3 features (see :mod:`aerocolor.fid`
for the preprocessing). The Inception Score needs that network's 1008-class classifier, whose
weights only the full standard weights file holds; its logits are pool3 features times the
classifier matrix, without the bias, as in the original Inception Score code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from skimage.color import deltaE_ciede2000
from skimage.metrics import structural_similarity

from .color import gray_from_rgb, to_tensor
from .colorize import side_by_side, to_gray
from .data.datasets import nodata_mask
from .errors import AerocolorError
from .fid import FEATURE_DIM, default_network_path, fid_features, frechet_distance, network_id
from .imageio import as_rgb, atomic_write, list_images, read_image, write_image
from .infer import Colorizer, pick_device
from .metrics import lab_of
from .progress import progress_bar

# the pytorch-fid release of the TensorFlow Inception weights, classifier included
STANDARD_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
CLASSIFIER_SHAPE = (1008, FEATURE_DIM)
# bump when the FID preprocessing changes, so cached reference features are recomputed
FEATURES_VERSION = 1
AB_RANGE, AB_BINS = 110.0, 32

SET_TITLES = {"gray": "gray versions of colour photos", "old": "real old photos"}
PAIRED_KEYS = (
    "psnr", "ssim", "ciede2000", "colorfulness", "colorfulness_truth", "ab_hist_distance",
)
DISTRIBUTION_KEYS = ("fid", "kid_mean", "kid_std", "is_mean", "is_std", "is_max")
METRIC_LABELS = {
    "fid": "FID", "kid_mean": "KID", "kid_std": "KID std", "is_max": "IS max",
    "is_mean": "IS mean", "is_std": "IS std", "psnr": "PSNR (dB)", "ssim": "SSIM",
    "ciede2000": "CIEDE2000",
    "colorfulness": "colourfulness", "colorfulness_truth": "colourfulness of truth",
    "ab_hist_distance": "ab-histogram distance",
}


@dataclass
class EvalOptions:
    max_images: int = 0  # 0: every image
    batch_size: int = 32
    device: str = "auto"
    fid_network: str | None = None
    inception_weights: str | None = None
    download: bool = True
    cache_dir: str | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    samples: int = 0
    samples_dir: str | None = None
    progress: bool = True  # bars for the colorizing and FID feature passes (on a terminal only)


# ---- paired metrics -------------------------------------------------------------------------


def psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    mse = float(((pred - truth) ** 2)[mask].mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def masked_ssim(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    _, full = structural_similarity(truth, pred, channel_axis=2, data_range=1.0, full=True)
    return float(full.mean(axis=2)[mask].mean())


def colorfulness(img: np.ndarray, mask: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness on the 0-255 scale (0 for gray images)."""
    px = img[mask] * 255.0
    rg = px[:, 0] - px[:, 1]
    yb = 0.5 * (px[:, 0] + px[:, 1]) - px[:, 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ab_histogram(lab: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised 2-D histogram of a*, b* (HxWx3 L*a*b*) over the mask pixels."""
    ab = lab[mask][:, 1:3].clip(-AB_RANGE, AB_RANGE)
    hist, _, _ = np.histogram2d(ab[:, 0], ab[:, 1], bins=AB_BINS,
                                range=[[-AB_RANGE, AB_RANGE], [-AB_RANGE, AB_RANGE]])
    return hist / hist.sum()


def ab_histogram_distance(lab_pred: np.ndarray, lab_truth: np.ndarray, mask: np.ndarray) -> float:
    """1 - the intersection of the normalised a*b* histograms: 0 for equal colour
    distributions, 1 for disjoint ones."""
    overlap = np.minimum(ab_histogram(lab_pred, mask), ab_histogram(lab_truth, mask)).sum()
    return float(1.0 - overlap)


def paired_metrics(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                   lab_truth: np.ndarray | None = None) -> dict[str, float]:
    """Colour metrics of an HxWx3 output against its HxWx3 truth over the data pixels
    (``lab_truth``: the truth in L*a*b*, when already known)."""
    m = mask.astype(bool)
    if not m.any():
        return {k: math.nan for k in PAIRED_KEYS}
    lab_pred = lab_of(pred)
    lab_truth = lab_of(truth) if lab_truth is None else lab_truth
    return {
        "psnr": psnr(pred, truth, m), "ssim": masked_ssim(pred, truth, m),
        "ciede2000": float(deltaE_ciede2000(lab_truth, lab_pred)[m].mean()),
        "colorfulness": colorfulness(pred, m), "colorfulness_truth": colorfulness(truth, m),
        "ab_hist_distance": ab_histogram_distance(lab_pred, lab_truth, m),
    }


def mean_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric mean over images, ignoring images without data pixels."""
    out = {}
    for k in PAIRED_KEYS:
        vals = np.array([r[k] for r in rows], dtype=float)
        vals = vals[~np.isnan(vals)]
        out[k] = float(vals.mean()) if len(vals) else math.nan
    return out


# ---- distribution metrics -------------------------------------------------------------------


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, mean and std over random
    subsets (with every image in one subset when both sets are small; the std is then NaN,
    reported as n/a: one subset has no spread to measure)."""
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise AerocolorError("KID needs at least 2 images in each set")
    if m == len(a) == len(b):
        subsets = 1
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((u @ v.T / d + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        scores.append(within - 2 * kxy.mean())
    return float(np.mean(scores)), float(np.std(scores)) if len(scores) > 1 else math.nan


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float, float]:
    """exp(E KL(p(y|x) || p(y))) per split: (mean, std, max) over the splits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    scores = []
    for part in np.array_split(p, max(1, min(splits, len(p)))):
        py = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(py + 1e-12))).sum(axis=1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores)), float(np.max(scores))


def _classifier_from_state(state: dict, source: str) -> np.ndarray:
    for key, value in state.items():
        if key.endswith("fc.weight") and tuple(value.shape) == CLASSIFIER_SHAPE:
            return value.double().numpy()
    raise AerocolorError(
        f"{source}: no Inception classifier (fc.weight 1008x2048) inside; give the standard "
        "weights pt_inception-2015-12-05-6726825d.pth"
    )


def load_classifier(path: str | None, download: bool) -> tuple[np.ndarray | None, str]:
    """The Inception classifier matrix (1008, 2048) and where it came from, or None and why not."""
    if path:
        if not Path(path).is_file():
            raise AerocolorError(f"{path}: no such Inception weights file; give the path of "
                                 "pt_inception-2015-12-05-6726825d.pth")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for a bad file
            raise AerocolorError(f"{path}: not a weights file ({type(e).__name__}: {e})") from None
        return _classifier_from_state(state, path), path
    fix = "give --inception-weights PATH (pt_inception-2015-12-05-6726825d.pth)"
    if not download:
        return None, f"Inception Score not computed: no classifier weights; {fix}"
    try:
        state = torch.hub.load_state_dict_from_url(STANDARD_WEIGHTS_URL, progress=False,
                                                   map_location="cpu", weights_only=True)
    except OSError as e:  # no network, or the download was refused
        why = f"the standard weights could not be downloaded ({e})"
        return None, f"Inception Score not computed: {why}; {fix}"
    return _classifier_from_state(state, STANDARD_WEIGHTS_URL), STANDARD_WEIGHTS_URL


@dataclass
class Scorer:
    """The FID network (pool3 features) and, where its weights exist, the classifier."""

    device: str
    batch_size: int
    network: str
    classifier: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10

    @classmethod
    def from_options(cls, opts: EvalOptions) -> Scorer:
        network = opts.fid_network or str(default_network_path())
        classifier, source = load_classifier(opts.inception_weights, opts.download)
        notes = [] if classifier is not None else [source]
        return cls(str(pick_device(opts.device)), opts.batch_size, network, classifier, notes,
                   opts.kid_subsets, opts.kid_subset_size, opts.is_splits)

    def features(self, images: Iterable[np.ndarray], total: int, desc: str, progress: bool = False) -> np.ndarray:
        """Pool3 features of ``total`` images, with a progress bar named ``desc``."""
        bar = progress_bar(images, progress, total=total, desc=desc, unit="image")
        return fid_features(bar, self.batch_size, self.device, self.network)

    def compare(self, feats: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        """FID and KID of ``feats`` against ``reference``; the Inception Score of ``feats``."""
        kid, kid_std = kernel_inception_distance(feats, reference, self.kid_subsets,
                                                 self.kid_subset_size)
        out = {"fid": frechet_distance(feats, reference), "kid_mean": kid, "kid_std": kid_std}
        if self.classifier is None:
            return {**out, "is_mean": math.nan, "is_std": math.nan, "is_max": math.nan}
        is_mean, is_std, is_max = inception_score(feats @ self.classifier.T, self.is_splits)
        return {**out, "is_mean": is_mean, "is_std": is_std, "is_max": is_max}


# ---- image sets and the reference cache -----------------------------------------------------


def pick_images(folders: list[str], limit: int) -> list[Path]:
    """Image files of the folders; with a ``limit``, that many spread evenly over the list."""
    files = list_images(folders)
    if not files:
        names = ", ".join(map(str, folders))
        raise AerocolorError(f"no images found in {names}: give folders of PNG/JPEG/TIFF")
    if limit and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aerocolor"


def cache_key(files: list[Path], network: str) -> str:
    """Identity of a feature set: each file (path, size, modification time) and the network."""
    ident = [FEATURES_VERSION, network_id(network)]
    for f in files:
        st = f.stat()
        ident.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return hashlib.sha1(json.dumps(ident).encode()).hexdigest()


def colour_of(path: Path) -> np.ndarray:
    return as_rgb(read_image(path))


def reference_features(files: list[Path], scorer: Scorer, cache_dir: Path, progress: bool = False) -> np.ndarray:
    """Pool3 features of colour images, cached on disk keyed by the files and the network."""
    path = cache_dir / f"features-{cache_key(files, scorer.network)[:20]}.npy"
    if path.is_file():
        return np.load(path)
    feats = scorer.features((colour_of(f) for f in files), len(files), "FID features of the truth", progress)
    atomic_write(path, lambda tmp: np.save(tmp, feats))
    return feats


# ---- one model ------------------------------------------------------------------------------


def _write_sample(opts: EvalOptions, name: str, index: int, panels: list[np.ndarray]) -> str | None:
    if not opts.samples_dir or index >= opts.samples:
        return None
    path = Path(opts.samples_dir) / f"{name}_{index:02d}.png"
    return str(write_image(path, side_by_side(*panels)))


def evaluate_gray(colorizer: Colorizer, files: list[Path], scorer: Scorer, opts: EvalOptions,
                  cache_dir: Path) -> dict:
    """Colorize the gray versions of colour photos; paired metrics, and distribution metrics
    against the truths. The gray inputs' own paired metrics are kept as a baseline."""
    rows, baseline, samples = [], [], []

    def outputs() -> Iterator[np.ndarray]:
        for i, f in enumerate(files):
            truth = colour_of(f)
            gray = gray_from_rgb(to_tensor(truth))[0, 0].numpy()
            out = colorizer.colorize(gray)
            mask, lab_truth = nodata_mask(truth), lab_of(truth)
            rows.append(paired_metrics(out, truth, mask, lab_truth))
            baseline.append(paired_metrics(as_rgb(gray), truth, mask, lab_truth))
            if sample := _write_sample(opts, "gray", i, [gray, out, truth]):
                samples.append(sample)
            yield out

    feats = scorer.features(outputs(), len(files), "colorize gray versions", opts.progress)
    dist = scorer.compare(feats, reference_features(files, scorer, cache_dir, opts.progress))
    return {"images": len(files), **dist, **mean_metrics(rows),
            "gray_input": mean_metrics(baseline), "samples": samples}


def evaluate_old(colorizer: Colorizer, files: list[Path], reference: list[Path], scorer: Scorer,
                 opts: EvalOptions, cache_dir: Path) -> dict:
    """Colorize real old photos; distribution metrics against a set of colour photos."""
    samples = []

    def outputs() -> Iterator[np.ndarray]:
        for i, f in enumerate(files):
            gray = to_gray(read_image(f))
            out = colorizer.colorize(gray)
            if sample := _write_sample(opts, "old", i, [gray, out]):
                samples.append(sample)
            yield out

    feats = scorer.features(outputs(), len(files), "colorize old photos", opts.progress)
    dist = scorer.compare(feats, reference_features(reference, scorer, cache_dir, opts.progress))
    return {"images": len(files), "reference_images": len(reference), **dist, "samples": samples}


def evaluate_model(colorizer: Colorizer, gray: list[str] | None = None,
                   old: list[str] | None = None, reference: list[str] | None = None,
                   opts: EvalOptions | None = None, scorer: Scorer | None = None) -> dict:
    """Evaluate a colorizer on gray versions of colour photos (``gray``) and on real old photos
    (``old``, against ``reference`` colour photos, by default the ``gray`` folders)."""
    opts = opts or EvalOptions()
    if not gray and not old:
        raise AerocolorError(
            "nothing to evaluate: give --data COLOUR_FOLDER and/or --old GRAY_FOLDER"
        )
    if old and not (reference or gray):
        raise AerocolorError(
            "old photos need a colour reference set: give --reference FOLDER or --data"
        )
    scorer = scorer or Scorer.from_options(opts)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    report: dict = {"checkpoint": colorizer.source, "method": colorizer.config.model.method,
                    "fid_network": scorer.network, "notes": list(scorer.notes)}
    if gray:
        files = pick_images(gray, opts.max_images)
        report["gray"] = evaluate_gray(colorizer, files, scorer, opts, cache_dir)
    if old:
        ref_files = pick_images(reference or gray, opts.max_images)
        files = pick_images(old, opts.max_images)
        report["old"] = evaluate_old(colorizer, files, ref_files, scorer, opts, cache_dir)
    return report


# ---- reports --------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def _finite(obj):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def report_markdown(report: dict) -> str:
    lines = [f"# Evaluation of {report['checkpoint']} ({report['method']})", ""]
    for key, title in SET_TITLES.items():
        if key not in report:
            continue
        res = report[key]
        lines += [f"## {title} ({res['images']} images)", ""]
        if "gray_input" in res:
            lines += ["| metric | output | gray input |", "|---|---|---|"]
            lines += [f"| {METRIC_LABELS[k]} | {fmt(res[k])} | {fmt(res['gray_input'][k])} |"
                      for k in PAIRED_KEYS]
        else:
            lines += ["| metric | output |", "|---|---|"]
        lines += [f"| {METRIC_LABELS[k]} | {fmt(res[k], 4 if 'kid' in k else 3)} |"
                  + (" |" if "gray_input" in res else "") for k in DISTRIBUTION_KEYS]
        lines.append("")
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """``evaluation.json`` and ``evaluation.md`` in ``out_dir``, written atomically."""
    text = json.dumps(_finite(report), indent=2)
    js = atomic_write(out_dir / "evaluation.json", lambda tmp: Path(tmp).write_text(text))
    md_text = report_markdown(report)
    md = atomic_write(out_dir / "evaluation.md", lambda tmp: Path(tmp).write_text(md_text))
    return js, md
