"""Typed configuration, loaded from YAML and overridable with ``section.key=value`` pairs.

The defaults are the research's defaults (the reference pix2pix): lr 2e-4, beta1 0.5,
lambda_L1 100, U-Net 256 with batch norm and dropout, 100 + 100 epochs with linear decay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class NetworkConfig(_Strict):
    netG: str = "unet_256"
    unet_depth: int | None = Field(None, ge=2, description="U-Net downsamplings; overrides the name's depth")
    ngf: int = Field(64, ge=1)
    netD: Literal["basic", "n_layers", "pixel"] = "basic"
    ndf: int = Field(64, ge=1)
    n_layers_D: int = Field(3, ge=1)
    norm: Literal["batch", "instance", "none"] = "batch"
    dropout: bool = True
    context: bool = Field(False, description="ResNet generators: a scene-context branch (features averaged "
                          "over the whole image scale and shift the middle block's output)")
    init_type: Literal["normal", "xavier", "kaiming", "orthogonal"] = "normal"
    init_gain: float = Field(0.02, gt=0)


class ReferenceConfig(_Strict):
    """A colour reference as a second input of the generator (see aerocolor.reference); the
    training references are made from the truth with the options below."""

    enabled: bool = Field(False, description="the generator takes a colour reference (method "
                          "pix2pix); without one it works as a plain model")
    scale: int = Field(8, ge=1, description="the reference's colour is averaged over blocks of this many "
                       "input pixels a side (the coarse scale it is given at)")
    drop_probability: float = Field(0.3, ge=0, le=1, description="training: share of images without a reference")
    palette_probability: float = Field(0.2, ge=0, le=1, description="training: share of images with a palette "
                                       "reference (mean colour only)")
    change_parts: int = Field(2, ge=0, description="training: up to this many rectangles of each reference "
                              "take another image's content (land-cover change)")
    change_max_side: float = Field(0.5, ge=0, le=1, description="training: their largest side, as a share of the crop")
    jitter_saturation: float = Field(0.3, ge=0, lt=1, description="training: colour gain and saturation jitter "
                                     "of the reference (season, sensor)")
    jitter_shift: float = Field(0.06, ge=0, le=1, description="training: colour offset jitter (RGB in [0, 1])")
    max_shift: int = Field(6, ge=0, description="training: misregistration of the reference in pixels")
    partial_probability: float = Field(0.2, ge=0, le=1, description="training: share of references that "
                                       "cover only part of the crop")


class ModelConfig(_Strict):
    method: str = "pix2pix"
    color_mode: Literal["rgb", "lab"] = "rgb"
    gan_mode: Literal["vanilla", "lsgan", "wgangp", "hinge"] = "vanilla"
    nets: NetworkConfig = NetworkConfig()
    options: dict[str, Any] = Field(default_factory=dict, description="method-specific options")
    ground_resolution: float | None = Field(None, description="metres per pixel of training data")
    reference: ReferenceConfig = ReferenceConfig()
    chroma: float = Field(1.0, gt=0, le=4, description="inference only: multiplier on the colour's a*, b* "
                          "(saturation); set after training by scripts/calibrate_chroma.py")


class DataConfig(_Strict):
    train: list[str] = Field(default_factory=list, description="colour images (paired: gray made on the fly)")
    train_a: list[str] = Field(default_factory=list, description="gray old photos (unpaired domain A)")
    val: list[str] = Field(default_factory=list, description="colour images for validation")
    val_max_images: int = Field(64, ge=0, description="0: all")
    load_size: int | None = Field(None, ge=1, description="resize the short side to this before cropping")
    crop_size: int = Field(256, ge=16, description="training crop side in pixels")
    flip: bool = True
    rotate90: bool = True
    num_workers: int = Field(0, ge=0)
    age: dict[str, Any] | None = Field(None, description="synthetic ageing of gray inputs")
    balance: Literal["none", "source", "source_class"] = Field(
        "none", description="colour images drawn so that each source (first folder below a train "
        "folder) and, with source_class, each scene class in the file names is drawn equally often")
    balance_strength: float = Field(1.0, ge=0, le=1, description="1: equal shares; 0: the file counts' "
                                    "own proportions; between: shares proportional to count ** (1 - strength)")


class OptimConfig(_Strict):
    lr_G: float = Field(2e-4, gt=0)
    lr_D: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    batch_size: int = Field(1, ge=1)
    n_epochs: int = Field(100, ge=0)
    n_epochs_decay: int = Field(100, ge=0)
    max_steps: int | None = Field(None, ge=1, description="total steps; the schedule keeps its shape")


class TrainConfig(_Strict):
    out_dir: str = "runs/pix2pix"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = False
    threads: int | None = Field(None, ge=1)
    val_every: int = Field(1000, ge=1)
    save_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    sample_every: int = Field(1000, ge=0, description="0: off")
    bn_calibration_images: int = Field(
        256, ge=0, description="training crops that re-estimate the inference networks' batch-norm statistics "
        "before each validation and save (0: keep the running averages)")
    init_from: str | None = Field(
        None, description="start the networks from this checkpoint's weights (layers of the same name and "
        "shape; new layers keep their initialisation); optimizers, schedule and step start afresh")


class Config(_Strict):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} has no '=': write it as section.key=value")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return data


def _format_error(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}")
    return f"{source}: invalid config ({'; '.join(parts)})"


def build_config(data: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(source, e)) from None


def read_yaml_mapping(path: Path, what: str, examples: str) -> dict:
    """A YAML file that must hold a mapping; errors name the file and where examples are."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}; see {examples} for examples")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults) and apply overrides."""
    data: dict = {}
    source = "config (defaults and --set)"
    if path is not None:
        data = read_yaml_mapping(Path(path), "config file", "configs/")
        source = str(path)
    apply_overrides(data, overrides or [])
    return build_config(data, source)
