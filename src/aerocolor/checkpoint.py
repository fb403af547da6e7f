"""Self-describing checkpoints: weights plus the full config, written atomically.

A checkpoint is a dict saved with ``torch.save`` holding only tensors and plain Python values,
so it loads with ``weights_only=True`` (no code runs when a checkpoint is opened).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import Config, ModelConfig, build_config
from .errors import CheckpointError
from .imageio import atomic_write

CKPT_SUFFIXES = (".pt", ".pth", ".ckpt", ".onnx")  # model files: checkpoints and ONNX exports

FORMAT = 1


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact."""
    payload = {"format": FORMAT, "aerocolor_version": __version__, **payload}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint; give a .pt file written by 'aerocolor train'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:120]  # torch's first sentence
        raise CheckpointError(f"{path}: not an aerocolor checkpoint ({type(e).__name__}: {first}); give a "
                              ".pt file written by 'aerocolor train' or 'aerocolor export'") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "nets" not in ckpt:
        raise CheckpointError(f"{path}: not an aerocolor checkpoint (no config or weights inside)")
    if ckpt.get("format", 0) > FORMAT:
        raise CheckpointError(
            f"{path}: written by a newer aerocolor ({ckpt.get('aerocolor_version')}); upgrade aerocolor"
        )
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], source: str = "checkpoint") -> Config:
    return build_config(ckpt["config"], source)


def checkpoint_model_config(ckpt: dict[str, Any]) -> ModelConfig:
    return checkpoint_config(ckpt).model


def slim_checkpoint(ckpt: dict[str, Any], inference_nets: tuple[str, ...], half: bool = False) -> dict[str, Any]:
    """Only what inference needs: the config and the inference networks' weights."""
    nets = {}
    for name in inference_nets:
        sd = ckpt["nets"][name]
        nets[name] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in sd.items()}
    keep = ("config", "step", "best", "metrics")
    return {**{k: ckpt[k] for k in keep if k in ckpt}, "nets": nets}
