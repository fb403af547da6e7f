"""Where the work runs: in this process, or on Ray actors (one model per actor).

Both engines offer the same three calls: ``share`` a value with every worker, ``run`` a worker
method over many items (results arrive as they finish), and ``close``. The Ray engine keeps at
most ``depth`` calls queued per actor, so a huge archive never floods the cluster or the
driver's memory (back-pressure), and resubmits a call whose actor died to a fresh actor: a
killed worker process costs only the file it was on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import AerocolorError
from .worker import ArchiveWorker, WorkSpec, error_reason

# on_result(key, value, error): value of a finished call, or error (one line) when it could not run
OnResult = Callable[[Any, Any, str | None], None]

MAX_ATTEMPTS = 3  # a file whose worker dies this often fails (it likely kills workers: memory)


class LocalEngine:
    """One worker in this process: the plain in-process path."""

    name = "local"

    def __init__(self, spec: WorkSpec):
        self.worker = ArchiveWorker(spec)
        self.workers = 1
        self.lost = 0

    def share(self, value: Any) -> Any:
        return value

    def run(self, method: str, items: Iterable[tuple[Any, tuple]], on_result: OnResult) -> None:
        call = getattr(self.worker, method)
        for key, args in items:
            try:
                value = call(*args)
            except Exception as e:  # as on Ray: the call's failure is reported, the others go on
                on_result(key, None, error_reason(e))
                continue
            on_result(key, value, None)

    def close(self) -> None:
        pass


class RayEngine:
    """Ray actors, each holding one :class:`ArchiveWorker`. Joins the cluster at ``address``, or
    starts a local Ray (``workers`` CPUs) and shuts it down on close; a Ray already initialised
    in this process is used as it is."""

    name = "ray"

    def __init__(self, spec: WorkSpec, address: str | None = None, workers: int | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0, depth: int = 2):
        try:
            import ray
        except ImportError:
            raise AerocolorError("--engine ray needs Ray: pip install 'aerocolor[ray]' (or 'ray>=2.9')") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address is None:  # GPUs are detected by Ray
                kwargs["num_cpus"] = max(1, int((workers or os.cpu_count() or 1) * cpus_per_worker))
            try:  # "local": a new Ray of our own, never someone else's running on this machine
                ray.init(address=address or "local", **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise AerocolorError(f"--ray-address {address}: cannot join the Ray cluster ({e}); "
                                     "start one with `ray start --head` or drop --ray-address") from None
            self.started = True
        try:
            if workers is None:
                cpus = ray.cluster_resources().get("CPU", 1)
                workers = max(1, int(cpus // max(cpus_per_worker, 1e-9)))
            actor = ray.remote(ArchiveWorker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)
            threads = max(1, int(cpus_per_worker))
            self.new_actor = lambda: actor.remote(spec, threads)
            self.actors = [self.new_actor() for _ in range(workers)]
            self.pids = ray.get([a.pid.remote() for a in self.actors])  # fail early if none can start
        except Exception:
            self.close()
            raise
        self.workers, self.depth, self.lost = workers, depth, 0

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def run(self, method: str, items: Iterable[tuple[Any, tuple]], on_result: OnResult) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        ray = self.ray
        todo = deque((key, args, 1) for key, args in items)
        load = {i: 0 for i in range(len(self.actors))}
        running: dict[Any, tuple[int, Any, Any, tuple, int]] = {}
        while todo or running:
            while todo and min(load.values()) < self.depth:
                i = min(load, key=load.get)
                key, args, attempt = todo.popleft()
                ref = getattr(self.actors[i], method).remote(*args)
                running[ref] = (i, self.actors[i], key, args, attempt)
                load[i] += 1
            (ref,), _ = ray.wait(list(running), num_returns=1)
            i, actor, key, args, attempt = running.pop(ref)
            load[i] -= 1
            try:
                value = ray.get(ref)
            except RayActorError:
                self.lost += 1
                if self.actors[i] is actor:  # its process died: a fresh one takes its place
                    ray.kill(actor)
                    self.actors[i] = self.new_actor()
                if attempt < MAX_ATTEMPTS:
                    todo.appendleft((key, args, attempt + 1))
                else:
                    on_result(key, None, f"its worker process died {attempt} times on it "
                                         "(out of memory? give workers more memory or smaller tiles)")
                continue
            except RayTaskError as e:
                on_result(key, None, str(e).strip().splitlines()[-1])
                continue
            on_result(key, value, None)

    def close(self) -> None:
        for a in getattr(self, "actors", []):
            self.ray.kill(a)
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False
