"""Tile manifests: one JSON record per tile (``manifest.jsonl`` in the tile folder), appended as
tiles are done so that a killed run loses at most the line it was writing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ..imageio import atomic_write

MANIFEST = "manifest.jsonl"


def read_manifest(folder: str | Path) -> dict[str, dict]:
    """Records by tile path (the last record of a path wins); a torn last line is ignored."""
    path = Path(folder) / MANIFEST
    records: dict[str, dict] = {}
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[rec["path"]] = rec
    return records


def write_manifest(folder: str | Path, records: dict[str, dict] | list[dict]) -> Path:
    """Rewrite the manifest atomically, one line per tile, sorted by path."""
    items = records.values() if isinstance(records, dict) else records
    text = "".join(json.dumps(r) + "\n" for r in sorted(items, key=lambda r: r["path"]))
    return atomic_write(Path(folder) / MANIFEST, lambda tmp: Path(tmp).write_text(text))


class ManifestLog:
    """Thread-safe appender of tile records."""

    def __init__(self, folder: str | Path):
        path = Path(folder) / MANIFEST
        path.parent.mkdir(parents=True, exist_ok=True)
        torn = path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
        self._file = open(path, "a")
        if torn:  # a killed run left half a line: end it so the next record stands alone
            self._file.write("\n")
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()
