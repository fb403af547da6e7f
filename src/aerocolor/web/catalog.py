"""The models a server offers: the bundled default and the checkpoints in a models folder.

Checkpoints are listed once at start-up (method and whether it is multimodal, from the config
they carry); a colorizer is built on first use and then kept.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import CKPT_SUFFIXES, checkpoint_config, load_checkpoint
from ..errors import AerocolorError
from ..infer import Colorizer, default_model_path, load_colorizer, reference_model_path
from ..methods import get_method

log = logging.getLogger("aerocolor.web")

DEFAULT_ID = "default"
REFERENCE_ID = "reference"  # the bundled reference model, the default for jobs with a reference


@dataclass(frozen=True)
class ModelEntry:
    id: str
    path: Path
    method: str
    color_mode: str
    multimodal: bool
    reference: bool = False  # takes a colour reference

    def describe(self) -> dict:
        return {"id": self.id, "method": self.method, "color_mode": self.color_mode,
                "multimodal": self.multimodal, "reference": self.reference}


def read_entry(model_id: str, path: Path) -> ModelEntry:
    config = checkpoint_config(load_checkpoint(path), str(path))
    return ModelEntry(id=model_id, path=path, method=config.model.method,
                      color_mode=config.model.color_mode,
                      multimodal=get_method(config.model.method).multimodal,
                      reference=config.model.reference.enabled)


def find_checkpoints(models_dir: Path | None, with_default: bool) -> list[tuple[str, Path]]:
    found = []
    if with_default and default_model_path().is_file():
        found.append((DEFAULT_ID, default_model_path()))
    if with_default and reference_model_path().is_file():
        found.append((REFERENCE_ID, reference_model_path()))
    if models_dir is not None:
        if not models_dir.is_dir():
            raise AerocolorError(f"{models_dir}: no such folder; "
                                 "give --models a folder of .pt files")
        found += [(p.name, p) for p in sorted(models_dir.iterdir())
                  if p.suffix.lower() in CKPT_SUFFIXES and p.is_file()]
    return found


class ModelCatalog:
    def __init__(self, models_dir: Path | None = None, device: str = "auto",
                 with_default: bool = True):
        self.device = device
        self.entries: dict[str, ModelEntry] = {}
        for model_id, path in find_checkpoints(models_dir, with_default):
            try:
                self.entries[model_id] = read_entry(model_id, path)
            except AerocolorError as e:
                log.warning("skipping model %s: %s", path, e)
        if not self.entries:
            raise AerocolorError("no models to serve: this install has no bundled model and "
                                 "--models names no folder of checkpoints; give --models DIR")
        self._colorizers: dict[str, Colorizer] = {}
        self._lock = threading.Lock()

    @property
    def default_id(self) -> str:
        return DEFAULT_ID if DEFAULT_ID in self.entries else next(iter(self.entries))

    def describe(self) -> list[dict]:
        return [{**e.describe(), "default": e.id == self.default_id}
                for e in self.entries.values()]

    def colorizer(self, model_id: str) -> Colorizer:
        with self._lock:
            if model_id not in self._colorizers:
                self._colorizers[model_id] = load_colorizer(self.entries[model_id].path,
                                                            self.device)
            return self._colorizers[model_id]
