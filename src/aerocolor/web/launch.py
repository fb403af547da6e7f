"""Start ``aerocolor serve`` in a child process on a free loopback port and wait until it answers
(for scripts and tests that drive the app from outside, e.g. with a browser)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(args: list[str], log: Path, wait_s: float = 60.0) -> Iterator[str]:
    """Run ``aerocolor serve ARGS`` (output to ``log``) for the duration; yields its base URL."""
    import httpx

    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aerocolor", "serve", "--port", str(port), *args],
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"aerocolor serve exited: {log.read_text()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"aerocolor serve did not answer within {wait_s:g} s: {log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
