"""Background jobs: a bounded queue, a fixed pool of worker threads, results kept for a while.

A request never waits for a colorization: it queues a job and returns its id. When the queue
is full the server says so at once (the caller gets a time to retry after) instead of piling up
work it cannot finish. Finished jobs and their files are removed ``keep_seconds`` later.
"""

from __future__ import annotations

import logging
import math
import queue
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AerocolorError

log = logging.getLogger("aerocolor.web")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# Assumed duration of a job before any has finished, for the first Retry-After estimates.
FIRST_GUESS_SECONDS = 5.0


@dataclass
class Job:
    id: str
    folder: Path
    name: str
    model: str
    samples: int
    width: int
    height: int
    seed: int = 0
    georeferenced: bool = False
    reference_strength: float | None = None  # a colour reference was uploaded (None: none)
    notes: list[str] = field(default_factory=list)
    restore: bool = False  # repair damage before colorizing
    saturation: float = 1.0  # times the model's own colour saturation (its chroma)
    state: str = QUEUED
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the job queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


def new_job_id() -> str:
    """128 random bits, URL-safe: the only key to a job's results."""
    return secrets.token_urlsafe(16)


class JobStore:
    """Runs ``run(job)`` for each submitted job on ``workers`` threads."""

    def __init__(self, work_dir: Path, run: Callable[[Job], None], workers: int = 2,
                 queue_size: int = 32, keep_seconds: float = 3600.0,
                 clean_every: float | None = None):
        if workers < 1 or queue_size < 1:
            raise AerocolorError("--workers and --queue-size must be at least 1")
        self.work_dir = work_dir
        self.workers = workers
        self.queue_size = queue_size
        self.keep_seconds = keep_seconds
        self._run = run
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._durations: deque[float] = deque(maxlen=32)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"aerocolor-worker-{i}",
                                          daemon=True) for i in range(workers)]
        every = clean_every if clean_every is not None else min(60.0, keep_seconds / 2)
        self._threads.append(threading.Thread(target=self._clean, args=(max(every, 0.05),),
                                              name="aerocolor-cleaner", daemon=True))
        for t in self._threads:
            t.start()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = [j.state for j in self._jobs.values()]
        return {s: states.count(s) for s in (QUEUED, RUNNING, DONE, FAILED)}

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the queue's work spread over the workers."""
        runs = list(self._durations) or [FIRST_GUESS_SECONDS]
        mean = sum(runs) / len(runs)
        return max(1, math.ceil(mean * (self._queue.qsize() + 1) / self.workers))

    def check_room(self) -> None:
        if self._queue.full():
            raise QueueFull(self.retry_after())

    def reserve(self) -> tuple[str, Path]:
        """A fresh job id and its empty folder."""
        job_id = new_job_id()
        folder = self.work_dir / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job: Job) -> None:
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull(self.retry_after()) from None
            self._jobs[job.id] = job

    def remove_expired(self, now: float | None = None) -> int:
        """Forget finished jobs older than ``keep_seconds`` and delete their files."""
        now = time.time() if now is None else now
        with self._lock:
            expired = [j for j in self._jobs.values()
                       if j.finished is not None and now - j.finished >= self.keep_seconds]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(expired)

    def expires_in(self, job: Job) -> float | None:
        if job.finished is None:
            return None
        return max(0.0, job.finished + self.keep_seconds - time.time())

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            job.state = RUNNING
            start = time.monotonic()
            try:
                self._run(job)
                job.progress, job.state = 1.0, DONE
            except AerocolorError as e:
                job.error, job.state = str(e), FAILED
            except Exception as e:  # a worker must survive any failure of one job
                log.exception("job %s failed", job.id)
                job.error = f"colorizing failed ({type(e).__name__}); see the server log"
                job.state = FAILED
            self._durations.append(time.monotonic() - start)
            job.finished = time.time()

    def _clean(self, every: float) -> None:
        while not self._stop.wait(every):
            self.remove_expired()
