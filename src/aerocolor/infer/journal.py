"""Finished output rows kept on disk while a long job runs, so that a job killed at any moment
(even by kill -9) continues where it stopped.

Beside an output ``NAME`` the journal ``.NAME.partial`` holds one record per finished block of
rows (arrays, compressed), appended and synced one at a time; its sidecar ``.NAME.partial.json``
holds the key of the work (input, options, model checksum). A rerun with the same key replays the
records and goes on after the last complete one; any other key starts over. A lock on the journal
keeps two processes from writing one output; while it is held, other hidden files of that output
are leftovers of killed runs and are removed.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import io
import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..imageio import atomic_write

MAGIC = b"ACRJ"
RECORD = struct.Struct("<4sQQII")  # magic, top row, payload bytes, arrays, crc32 of the payload
ZLIB_LEVEL = 1  # the journal is scratch space: fast beats small


def file_checksum(path: str | Path) -> str:
    """SHA-256 of a file, taken once per version of it (a folder of rasters shares one model)."""
    stat = Path(path).stat()
    return _checksum(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _checksum(path: str, size: int, mtime_ns: int, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _Deflated:
    """A write-only file that compresses what it is given (numpy writes arrays to it in chunks,
    so a record never needs a second uncompressed copy)."""

    def __init__(self):
        self.z, self.parts = zlib.compressobj(ZLIB_LEVEL), []

    def write(self, data: bytes) -> None:
        self.parts.append(self.z.compress(data))


def encode(arrays: list[np.ndarray]) -> list[bytes]:
    out = _Deflated()
    for a in arrays:
        np.lib.format.write_array(out, np.ascontiguousarray(a), allow_pickle=False)
    return [*out.parts, out.z.flush()]


def decode(payload: bytes, count: int) -> list[np.ndarray]:
    buf = io.BytesIO(zlib.decompress(payload))
    return [np.load(buf, allow_pickle=False) for _ in range(count)]


class RowJournal:
    """The journal of one output; use :meth:`open` (a context manager via ``with``)."""

    def __init__(self, out: Path, key: dict):
        self.out = Path(out)
        self.path = self.out.with_name(f".{self.out.name}.partial")
        self.sidecar = self.out.with_name(f".{self.out.name}.partial.json")
        self.key = json.loads(json.dumps(key))  # as it reads back from the sidecar
        self.file = None
        self.index: list[tuple[int, int, int, int]] = []  # (top, payload offset, bytes, arrays)
        self.restarted = False  # a journal of other work was found and dropped

    def __enter__(self) -> RowJournal:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+b")  # noqa: SIM115 (held open for the lock)
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise OutputError(f"{self.out}: another process is writing this output now; wait for it "
                              "or give another --out folder") from None
        self._remove_leftovers()
        if self._saved_key() == self.key:
            self._scan()
        else:
            self.restarted = self.file.seek(0, os.SEEK_END) > 0
            self.file.truncate(0)
            atomic_write(self.sidecar, lambda tmp: Path(tmp).write_text(json.dumps(self.key)))
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()

    def _remove_leftovers(self) -> None:
        """Temp files of this output that killed runs left behind (none can be live: we hold
        the output's lock)."""
        prefix = f".{self.out.name}."
        keep = {self.path.name, self.sidecar.name}
        for p in self.out.parent.iterdir():
            if p.name.startswith(prefix) and p.name not in keep and p.is_file():
                p.unlink(missing_ok=True)

    def _saved_key(self) -> dict | None:
        try:
            return json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return None

    def _scan(self) -> None:
        """Index the complete records; cut off a record a kill left half-written."""
        f, end = self.file, self.file.seek(0, os.SEEK_END)
        pos = 0
        f.seek(0)
        while pos + RECORD.size <= end:
            magic, top, size, count, crc = RECORD.unpack(f.read(RECORD.size))
            start = pos + RECORD.size
            if magic != MAGIC or start + size > end or zlib.crc32(f.read(size)) != crc:
                break
            self.index.append((top, start, size, count))
            pos = start + size
        if pos < end:
            f.truncate(pos)

    @property
    def blocks_done(self) -> int:
        return len(self.index)

    def records(self) -> Iterator[tuple[int, list[np.ndarray]]]:
        """The finished blocks, in order, as (top row, arrays), read one at a time."""
        for top, start, size, count in self.index:
            self.file.seek(start)
            yield top, decode(self.file.read(size), count)

    def append(self, top: int, arrays: list[np.ndarray]) -> None:
        """Record a finished block; it is on disk when this returns."""
        parts = encode(arrays)
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        self.file.seek(0, os.SEEK_END)
        self.file.write(RECORD.pack(MAGIC, top, sum(map(len, parts)), len(arrays), crc))
        for part in parts:
            self.file.write(part)
        self.file.flush()
        os.fsync(self.file.fileno())

    def discard(self) -> None:
        """The output is complete: the journal and its sidecar go."""
        self.sidecar.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
