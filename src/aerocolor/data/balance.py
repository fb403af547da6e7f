"""Sampling weights that keep one source or one scene type from dominating training.

A file's *source* is the dataset it comes from: the first folder below the training folder it
was found in (``color/train/aid/x.jpg`` -> ``aid``), or that folder itself. Its *scene class*
comes from the file name where the dataset puts one there: AID ``<class>_<class>_<n>`` and
RSSCN7 ``rsscn7_<class>_<id>``; other files have none.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ConfigError

BALANCE_MODES = ("none", "source", "source_class")
_AID = re.compile(r"^([a-z]+)_\1_\d+$")
_RSSCN7 = re.compile(r"^rsscn7_([a-z]+)_[a-z]?\d+$")


def scene_label(path: Path) -> str | None:
    """The scene class in a file name (AID, RSSCN7), else None."""
    stem = path.stem.lower()
    m = _AID.match(stem) or _RSSCN7.match(stem)
    return m.group(1) if m else None


def source_of(path: Path, roots: list[Path]) -> str:
    """The dataset a file comes from (see the module docstring)."""
    for root in roots:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return rel.parts[0] if len(rel.parts) > 1 else root.name
    return path.parent.name


def balance_weights(files: list[Path], roots: list[str | Path], mode: str) -> np.ndarray | None:
    """Per-file sampling probabilities (summing to 1), or None for uniform (``none``).

    ``source``: every source is drawn equally often; ``source_class``: also every scene class
    equally often within its source."""
    if mode not in BALANCE_MODES:
        raise ConfigError(f"data.balance {mode!r}: choose one of {', '.join(BALANCE_MODES)}")
    if mode == "none" or not files:
        return None
    root_paths = [Path(r) for r in roots if Path(r).is_dir()]
    groups = [(source_of(f, root_paths), scene_label(f) if mode == "source_class" else None)
              for f in files]
    per_group = Counter(groups)
    classes_per_source = Counter(src for src, _ in per_group)
    sources = len(classes_per_source)
    w = np.array([1.0 / (sources * classes_per_source[g[0]] * per_group[g]) for g in groups])
    return w / w.sum()


def describe(files: list[Path], weights: np.ndarray | None, roots: list[str | Path]) -> str:
    """One line: each source's share of the draws."""
    root_paths = [Path(r) for r in roots if Path(r).is_dir()]
    p = np.full(len(files), 1.0 / len(files)) if weights is None else weights
    shares: dict[str, float] = {}
    for f, q in zip(files, p, strict=True):
        src = source_of(f, root_paths)
        shares[src] = shares.get(src, 0.0) + float(q)
    return ", ".join(f"{s} {100 * v:.0f}%" for s, v in sorted(shares.items()))
