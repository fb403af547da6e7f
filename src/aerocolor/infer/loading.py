"""Colorizers from files: a checkpoint run by torch, or an ONNX model run by onnxruntime."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

from ..config import Config
from ..errors import CheckpointError
from ..methods import Method
from .colorizer import Colorizer
from .generator import pick_device
from .torch_backend import TorchGenerator, load_method


def default_model_path() -> Path:
    """The model bundled with the package."""
    return Path(str(resources.files("aerocolor") / "models" / "default.pt"))


def reference_model_path() -> Path:
    """The bundled model that takes a colour reference (``--reference`` picks it by default)."""
    return default_model_path().with_name("reference.pt")


def torch_colorizer(method: Method, config: Config, device: str | torch.device = "cpu",
                    source: str = "") -> Colorizer:
    """A colorizer running a method's generator with torch."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return Colorizer(TorchGenerator(method, dev), config, dev, source)


def onnx_colorizer(path: Path, device: str = "auto") -> Colorizer:
    """A colorizer running an ``.onnx`` file, or a checkpoint exported to ONNX in memory."""
    from .onnx import OnnxGenerator, export_onnx  # onnxruntime is needed only here

    dev = pick_device(device)
    if path.suffix.lower() == ".onnx":
        gen = OnnxGenerator(str(path), dev, str(path))
    else:
        method, config = load_method(path)
        gen = OnnxGenerator(export_onnx(method, config), dev, str(path))
    return Colorizer(gen, gen.config, dev, str(path))


def load_colorizer(path: str | Path | None = None, device: str = "auto",
                   backend: str = "auto") -> Colorizer:
    """Load a checkpoint (``.pt``) or an exported ONNX model (``.onnx``); ``backend`` is
    ``torch``, ``onnx`` (a checkpoint is exported on the fly) or ``auto`` (by file type).
    Without a path, the bundled model."""
    path = Path(path) if path is not None else default_model_path()
    if not path.is_file() and path == default_model_path():
        raise CheckpointError(
            "no bundled model in this install; give a checkpoint "
            "(aerocolor colorize -m CKPT ...)")
    if backend not in ("auto", "torch", "onnx"):
        raise CheckpointError(f"unknown backend {backend!r}: choose torch, onnx or auto")
    if path.suffix.lower() == ".onnx" or backend == "onnx":
        if path.suffix.lower() == ".onnx" and backend == "torch":
            raise CheckpointError(f"{path}: an ONNX model runs with --backend onnx, not torch")
        return onnx_colorizer(path, device)
    return torch_colorizer(*load_method(path), device, str(path))
