"""The job manifest: one JSON line per finished attempt at an input, appended as work completes.

A line holds the input (with its size and modification time), the outputs with their SHA-256,
the status (done or failed, with the reason), and the job key: a digest of the model file and
of every option that changes the output bytes. A rerun skips an input whose latest line is done
with the same job key, an unchanged input and outputs that still match their checksums; it
redoes the others (missing, corrupted or stale outputs, failures).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

MANIFEST_NAME = "colorize-manifest.jsonl"
HASH_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def input_signature(path: str | Path) -> dict:
    """What identifies an input's version without reading it all: size and modification time
    (unknown for GDAL virtual paths such as /vsis3/...: their outputs are verified by checksum)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"size": None, "mtime_ns": None}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def job_key(fields: dict) -> str:
    """A short digest of the options (and model checksum) that decide the output bytes."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Manifest:
    """``out/colorize-manifest.jsonl``: read the latest line per input, append new ones."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST_NAME

    def latest(self) -> dict[str, dict]:
        """The last record of each input; a line cut short by a killed job is ignored."""
        records: dict[str, dict] = {}
        if not self.path.is_file():
            return records
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "input" in record:
                records[record["input"]] = record
        return records

    def append(self, record: dict) -> None:
        """One line, written in one call and synced, so a kill leaves at most a cut last line."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with open(self.path, "ab") as f:
            if f.tell() and not self._ends_with_newline():
                line = "\n" + line  # close a line cut short by a killed job
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"


def verified(record: dict | None, key: str, source: Path, out_dir: Path) -> bool:
    """Whether a manifest record proves the input is done: same job key, unchanged input, and
    every output (named relative to ``out_dir``) present with its recorded checksum."""
    if not record or record.get("status") != "done" or record.get("job") != key:
        return False
    try:
        if record.get("source") != input_signature(source):
            return False
        return all((out_dir / o["path"]).is_file() and file_sha256(out_dir / o["path"]) == o["sha256"]
                   for o in record.get("outputs", []))
    except (OSError, KeyError, TypeError):
        return False
