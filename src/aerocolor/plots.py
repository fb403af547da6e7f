"""Loss-curve plots from a run's losses.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import AerocolorError


def read_losses(path: Path) -> dict[str, list[float]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise AerocolorError(f"{path}: no losses logged yet")
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def plot_loss_curves(run: Path, out: Path | None = None, keys: list[str] | None = None) -> Path:
    """One panel per loss over training steps; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = run / "losses.csv" if run.is_dir() else run
    if not path.is_file():
        raise AerocolorError(f"{path}: no such loss log; give a run folder written by 'aerocolor train'")
    cols = read_losses(path)
    names = keys or [k for k in cols if k not in ("step", "images_per_s")]
    missing = [k for k in names if k not in cols]
    if missing:
        raise AerocolorError(f"{path}: no column {', '.join(missing)}; it has {', '.join(cols)}")
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], names):
        ax.plot(cols["step"], cols[k], lw=1)
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    out = out or path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
