"""Progress bars for long passes: tqdm on stderr, shown only on a terminal and when asked for."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs) -> tqdm:
    """A bar over ``iterable`` (tqdm keywords: total, desc, unit); off when ``enabled`` is false
    or stderr is not a terminal (logs and pipes get no bar), and cleared when done."""
    return tqdm(iterable, disable=None if enabled else True, leave=False, dynamic_ncols=True, **kwargs)
