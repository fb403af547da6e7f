"""The fixed split of ``color/val`` into a selection half (to choose models, thresholds and
settings on) and a report half (measured once, never tuned to): in each source folder, the first
half of its sorted images is for selection, the rest for the report."""

from __future__ import annotations

from pathlib import Path

from ..imageio import list_images

HALVES = ("selection", "report")


def val_half(val_root: Path, half: str) -> list[Path]:
    """The images of ``half`` ("selection" or "report") of ``val_root`` (color/val)."""
    if half not in HALVES:
        raise ValueError(f"half {half!r}: choose {' or '.join(HALVES)}")
    files: list[Path] = []
    for sub in sorted(p for p in Path(val_root).iterdir() if p.is_dir()):
        items = list_images(sub)
        cut = len(items) // 2
        files += items[:cut] if half == "selection" else items[cut:]
    return files
