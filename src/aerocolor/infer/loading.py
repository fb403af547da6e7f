"""Colorizers from files: a checkpoint run by torch, or an ONNX model run by onnxruntime."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..config import Config
from ..errors import CheckpointError, ConfigError
from ..imageio import atomic_write
from ..methods import Method
from ..runtime import map_large_allocations, release_free_memory
from .colorizer import CPU_CUT_TILE, Colorizer
from .generator import pick_device
from .torch_backend import PRECISIONS, TorchGenerator, default_precision, load_method

log = logging.getLogger("aerocolor")

BACKENDS = ("torch", "onnx", "int8")  # in order of preference
# a later backend is chosen only when measured at least this many times as fast as the one before
# it: torch runs the reference path in less memory (16384^2 raster: about 1.35 against 1.5 GB), and
# on whole rasters the two ran within 10% of each other here, so a one-tile probe closer than that
# cannot tell them apart (two quiet probes minutes apart ranked them both ways)
PREFERENCE_MARGIN = 1.10
# side of the gray tile the backends are timed on: the tile a large input is cut into on the
# CPU (``auto`` chooses for the CPU only), since the faster backend on small tiles need not be the
# faster on a raster's tiles
PROBE_SIDE = CPU_CUT_TILE
PROBE_RUNS = 5  # timed runs per backend, interleaved; the best of each counts (3 let one slow
# stretch of bfloat16 torch runs pass for its speed: 0.49 against 0.79-0.86 MP/s in repeats)


def default_model_path() -> Path:
    """The model bundled with the package."""
    return Path(str(resources.files("aerocolor") / "models" / "default.pt"))


def reference_model_path() -> Path:
    """The bundled model that takes a colour reference (``--reference`` picks it by default)."""
    return default_model_path().with_name("reference.pt")


def torch_colorizer(method: Method, config: Config, device: str | torch.device = "cpu",
                    source: str = "", precision: str = "auto") -> Colorizer:
    """A colorizer running a method's generator with torch (``precision``: see
    :class:`TorchGenerator`)."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    colorizer = Colorizer(TorchGenerator(method, dev, precision=precision), config, dev, source)
    colorizer.backend = "torch"
    return colorizer


def is_onnx_file(path: str | Path | None) -> bool:
    """Whether ``path`` names an ONNX model (by its suffix)."""
    return path is not None and Path(path).suffix.lower() == ".onnx"


def onnx_colorizer(path: Path, device: str = "auto") -> Colorizer:
    """A colorizer running an ``.onnx`` file, or a checkpoint exported to ONNX in memory."""
    from .onnx import OnnxGenerator, export_onnx  # onnxruntime is needed only here

    dev = pick_device(device)
    if is_onnx_file(path):
        gen = OnnxGenerator(str(path), dev, str(path))
    else:
        method, config = load_method(path)
        blob = export_onnx(method, config)
        del method
        release_free_memory()  # what the exporter allocated and freed
        gen = OnnxGenerator(blob, dev, str(path))
    colorizer = Colorizer(gen, gen.config, dev, str(path))
    colorizer.backend = "onnx"
    return colorizer


def load_colorizer(path: str | Path | None = None, device: str = "auto",
                   backend: str | None = None, chroma: float | None = None,
                   precision: str = "auto") -> Colorizer:
    """Load a checkpoint (``.pt``) or an exported ONNX model (``.onnx``); ``backend`` is
    ``torch``, ``onnx`` (a checkpoint is exported on the fly), ``auto`` (on the CPU, the one
    measured faster for this model on this machine, see :func:`choose_backend`) or None (by file
    type). Without a path, the bundled model. ``Colorizer.backend`` records the choice.
    ``chroma`` overrides the model's saturation multiplier (``--chroma``); ``precision`` is the
    torch backend's (``--precision``, see :class:`TorchGenerator`; onnxruntime runs float32)."""
    if chroma is not None:
        check_chroma(chroma)
    check_precision(precision, backend, path)
    colorizer = _load_colorizer(path, device, backend, precision)
    if colorizer.device.type == "cpu" and str(colorizer.backend or "").startswith(("onnx", "int8")):
        map_large_allocations()
    if chroma is not None:
        colorizer.chroma = chroma
    return colorizer


def _load_colorizer(path: str | Path | None, device: str, backend: str | None, precision: str) -> Colorizer:
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file() and path == default_model_path():
        raise CheckpointError(
            "no bundled model in this install; give a checkpoint "
            "(aerocolor colorize -m CKPT ...)")
    if backend not in (None, "auto", *BACKENDS):
        raise CheckpointError(f"unknown backend {backend!r}: choose torch, onnx, int8 or auto")
    is_onnx = is_onnx_file(path)
    if is_onnx and backend in ("torch", "int8"):
        raise CheckpointError(f"{path}: an ONNX model runs with --backend onnx (an int8 one too), not {backend}")
    if is_onnx or backend == "onnx":
        return onnx_colorizer(path, device)
    if backend == "int8":
        return int8_colorizer(path, device)
    colorizer = torch_colorizer(*load_method(path), device, str(path), precision)
    # multimodal models stay on torch: their style encoder (--style, --samples) is not exported
    if backend == "auto" and colorizer.device.type == "cpu" and not colorizer.multimodal and precision == "auto":
        return fastest_colorizer(path, colorizer)
    return colorizer


def int8_colorizer(path: Path, device: str = "auto") -> Colorizer:
    """The int8 model of a checkpoint (see :mod:`aerocolor.infer.int8`), run by onnxruntime."""
    from .int8 import int8_model_for

    int8 = int8_model_for(path)
    if int8 is None:
        raise CheckpointError(
            f"{path}: no int8 model of this checkpoint (only the bundled model has one); make one with "
            f"'aerocolor export {path} --onnx OUT.onnx --int8 PHOTOS/' and colorize with OUT.onnx")
    colorizer = onnx_colorizer(int8, device)
    colorizer.backend = "int8"
    return colorizer


def check_precision(precision: str, backend: str | None, path: str | Path | None) -> None:
    """``--precision``: auto or one of :data:`PRECISIONS`; an explicit one needs the torch backend
    (an ``.onnx`` file or ``--backend onnx`` runs float32 in onnxruntime)."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision}: choose auto, {', '.join(PRECISIONS)}")
    if precision != "auto" and (backend in ("onnx", "int8") or is_onnx_file(path)):
        raise ConfigError(f"--precision {precision} applies to the torch backend; onnxruntime runs float32 "
                          "(use --backend torch with a checkpoint, or leave --precision auto)")


def check_chroma(chroma: float) -> None:
    """A saturation multiplier (``--chroma``) must lie in (0, 4]."""
    if not 0 < chroma <= 4:
        raise ConfigError(f"--chroma {chroma}: give a saturation multiplier above 0 and at most 4 (1: as predicted)")


def choose_backend(speeds: dict[str, float], margin: float = PREFERENCE_MARGIN) -> str:
    """The first of :data:`BACKENDS` measured, unless a later one ran at least ``margin`` times
    as many megapixels per second as the one chosen so far. A function of the measurements alone."""
    chosen = None
    for b in BACKENDS:
        if b in speeds and (chosen is None or speeds[b] >= margin * speeds[chosen]):
            chosen = b
    if chosen is None:
        raise ValueError(f"no measurement of a known backend ({', '.join(BACKENDS)}) in {speeds}")
    return chosen


def measure_backends(colorizers: dict[str, Colorizer], side: int = PROBE_SIDE,
                     runs: int = PROBE_RUNS) -> dict[str, float]:
    """Megapixels per second of each colorizer's generator on one gray tile (a fixed smooth
    gradient), timed in turns so that a change in the machine's load hits all alike; the best
    run of each counts."""
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    gray = torch.from_numpy(np.outer(ramp, ramp[::-1]))[None, None]
    best = dict.fromkeys(colorizers, float("inf"))
    for c in colorizers.values():
        c.raw_output(gray.to(c.device))  # warm-up: first calls plan kernels and allocate
    for _ in range(runs):
        for name, c in colorizers.items():
            start = time.perf_counter()
            c.raw_output(gray.to(c.device))
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: side * side / 1e6 / t for name, t in best.items()}


def backend_cache_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "aerocolor" / "backends.json"


def machine_key(path: Path, precision: str | None = None) -> str:
    """What a measurement depends on: the model's bytes (and its int8 model's, if it has one),
    the runtimes and torch's precision (None: the CPU's default), the CPU and threads, and the
    probe's tile size."""
    precision = precision or default_precision(torch.device("cpu"))
    import onnxruntime

    from .int8 import file_digest, int8_model_for

    digest = file_digest(path)[:16]
    int8 = int8_model_for(path)
    if int8 is not None:
        digest += f" int8 {file_digest(int8)[:16]}"
    return (f"{digest} torch {torch.__version__} {precision} onnxruntime {onnxruntime.__version__} "
            f"{platform.machine()} {platform.processor() or cpu_name()} threads {torch.get_num_threads()} "
            f"probe {PROBE_SIDE} px")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def fastest_colorizer(path: Path, torch_one: Colorizer) -> Colorizer:
    """The torch colorizer, the ONNX one of the same checkpoint or its int8 model (where it has
    one), as :func:`choose_backend` picks from their speeds here: measured once per model,
    runtime versions, CPU and thread count, and remembered in the user's cache folder
    (``backends.json``), so a choice does not flip with the load of the moment. Logs the choice
    and its measurements."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        torch_one.backend = "torch (auto: onnxruntime not installed)"
        return torch_one
    cache = backend_cache_path()
    precision = getattr(torch_one.generator, "precision", "float32")
    key = machine_key(path, precision)
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    from .int8 import int8_model_for

    candidates = [b for b in BACKENDS if b != "int8" or int8_model_for(path) is not None]
    loaded = {"torch": torch_one}
    speeds = known.get(key)
    if not isinstance(speeds, dict) or set(speeds) != set(candidates):
        loaded["onnx"] = onnx_colorizer(path, "cpu")
        if "int8" in candidates:
            loaded["int8"] = int8_colorizer(path, "cpu")
        speeds = measure_backends(loaded)
        known[key] = speeds
        try:
            atomic_write(cache, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=1)))
        except OSError as e:
            log.warning("could not remember the backend measurements in %s (%s)", cache, e)
    chosen = choose_backend(speeds)
    label = f"{chosen} {precision}" if chosen == "torch" and precision != "float32" else chosen
    note = (f"{label} (auto: " + ", ".join(f"{b} {speeds[b]:.3f} MP/s" for b in candidates)
            + f" on a {PROBE_SIDE} px tile)")
    log.info("backend %s", note)
    if chosen not in loaded:
        loaded[chosen] = onnx_colorizer(path, "cpu") if chosen == "onnx" else int8_colorizer(path, "cpu")
    colorizer = loaded[chosen]
    colorizer.backend = note
    del loaded  # the others' sessions and weights go now
    return colorizer
