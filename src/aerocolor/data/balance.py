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


def scene_ids(files: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Each file's scene class as an index into the sorted class names found (-1: none), and
    those names: the targets of a scene-class head (``model.options.lambda_scene``)."""
    labels = [scene_label(f) for f in files]
    names = sorted({label for label in labels if label is not None})
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.int64), names


def source_of(path: Path, roots: list[Path]) -> str:
    """The dataset a file comes from (see the module docstring)."""
    for root in roots:
        try:
            rel = path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
        return rel.parts[0] if len(rel.parts) > 1 else root.name
    return path.parent.name


def balance_weights(files: list[Path], roots: list[str | Path], mode: str,
                    strength: float = 1.0) -> np.ndarray | None:
    """Per-file sampling probabilities (summing to 1), or None for uniform (``none``).

    ``source``: every source is drawn equally often; ``source_class``: also every scene class
    equally often within its source. ``strength`` s in [0, 1] tempers that: a source (or class)
    of n files gets a share proportional to n ** (1 - s), so 1 is fully balanced, 0 is the
    files' own proportions and 0.5 shares by the square root of the counts (a small source is
    drawn more often than its size alone gives, but a large one is not starved)."""
    if mode not in BALANCE_MODES:
        raise ConfigError(f"data.balance {mode!r}: choose one of {', '.join(BALANCE_MODES)}")
    if not 0.0 <= strength <= 1.0:
        raise ConfigError(f"data.balance_strength {strength}: give a number from 0 (file counts) to 1 (equal shares)")
    if mode == "none" or not files:
        return None
    root_paths = [Path(r) for r in roots if Path(r).is_dir()]
    groups = [(source_of(f, root_paths), scene_label(f) if mode == "source_class" else None)
              for f in files]
    per_group = Counter(groups)
    per_source = Counter(src for src, _ in groups)
    keep = 1.0 - strength
    # share of a source, then of a class within its source, each proportional to count ** keep
    source_share = {s: n ** keep for s, n in per_source.items()}
    total = sum(source_share.values())
    class_total: Counter = Counter()
    for g, n in per_group.items():
        class_total[g[0]] += n ** keep
    w = np.array([source_share[g[0]] / total * per_group[g] ** keep / class_total[g[0]] / per_group[g]
                  for g in groups])
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
