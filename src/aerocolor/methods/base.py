"""The one small interface every method implements, and the registry that finds them by name.

A method builds its networks from a :class:`ModelConfig`, makes one training step from a batch
(returning a dict of losses), and ``generate``s colour from gray for inference. The trainer,
evaluator, study runner, exporter and web app use only this interface.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, ValidationError

from ..color import check_mode, out_channels
from ..config import ModelConfig, OptimConfig
from ..errors import ConfigError
from ..nets import size_multiple
from ..reference import REFERENCE_CHANNELS, no_reference

METHODS: dict[str, type[Method]] = {}


class MethodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}: choose one of {', '.join(sorted(METHODS))}")
    return METHODS[name]


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside a DistributedDataParallel wrapper."""
    return getattr(net, "module", net)


def parameters_of(nets: list[nn.Module]) -> list[nn.Parameter]:
    """The parameters of several networks, for one optimizer."""
    return [p for net in nets for p in net.parameters()]


def adam(params, optim: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """Adam with the run's betas; the fused kernel (one pass over each parameter instead of
    several) where this torch build has it, which on the CPU makes the step several times faster."""
    params = list(params)
    betas = (optim.beta1, optim.beta2)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=betas)


def set_requires_grad(nets: list[nn.Module] | nn.Module, flag: bool) -> None:
    for net in nets if isinstance(nets, list) else [nets]:
        for p in net.parameters():
            p.requires_grad_(flag)


class Method(nn.Module):
    """Base class: subclasses set ``name``, ``Options`` and implement the hooks below."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    data_kind: ClassVar[str] = "paired"  # or "unpaired" (domain A gray, domain B colour)
    inference_nets: ClassVar[tuple[str, ...]] = ("netG",)
    trainable_nets: ClassVar[tuple[str, ...]] = ("netG", "netD")
    multimodal: ClassVar[bool] = False
    calibration_keys: ClassVar[tuple[str, ...]] = ("gray",)  # batch inputs the generator sees at inference
    supports_reference: ClassVar[bool] = False  # can take a colour reference (model.reference.enabled)

    def __init__(self, cfg: ModelConfig, training: bool = True):
        super().__init__()
        self.cfg = cfg
        self.mode = check_mode(cfg.color_mode)
        self.training_mode = training
        try:
            self.opts = self.Options(**cfg.options)
        except ValidationError as e:
            msg = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ConfigError(f"model.options for {self.name}: {msg}") from None
        if cfg.reference.enabled and not self.supports_reference:
            supported = ", ".join(sorted(n for n, m in METHODS.items() if m.supports_reference))
            raise ConfigError(f"model.reference.enabled: method {self.name!r} takes no colour reference; "
                              f"choose {supported} or set model.reference.enabled=false")
        self.amp: Callable[[], Any] = contextlib.nullcontext
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @property
    def in_channels(self) -> int:
        return 1

    @property
    def reference_channels(self) -> int:
        """Planes of a colour reference the generator takes beside its input (0: none)."""
        return REFERENCE_CHANNELS if self.cfg.reference.enabled else 0

    @property
    def out_channels(self) -> int:
        return out_channels(self.mode)

    @property
    def size_multiple(self) -> int:
        return size_multiple(self.cfg.nets)

    def configure_optimizers(self, optim: OptimConfig) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def generate(self, x: torch.Tensor, z: torch.Tensor | None = None,
                 ref: torch.Tensor | None = None) -> torch.Tensor:
        """Generator input (see :func:`aerocolor.color.net_input`) and, for a reference model, the
        reference planes (see :mod:`aerocolor.reference`; None: no reference) -> generator output."""
        return unwrap(self.netG)(self.with_reference(x, ref))

    def with_reference(self, x: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """The generator's input: ``x`` and, for a reference model, the reference planes."""
        if not self.reference_channels:
            return x
        if ref is None:
            ref = no_reference(x.shape[0], x.shape[-2:], x)
        return torch.cat([x, ref.to(x.dtype)], dim=1)

    def wrap_nets(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap each trainable network (e.g. in DistributedDataParallel)."""
        for name in self.trainable_nets:
            setattr(self, name, wrap(getattr(self, name)))

    def nets_state(self, names: tuple[str, ...] | None = None) -> dict[str, dict]:
        names = names or tuple(n for n in self.trainable_nets if hasattr(self, n))
        return {n: unwrap(getattr(self, n)).state_dict() for n in names}

    def load_nets_state(self, state: dict[str, dict]) -> None:
        for name, sd in state.items():
            if hasattr(self, name):
                unwrap(getattr(self, name)).load_state_dict(sd)

    def extra_state(self) -> dict:
        """Training state beyond weights and optimizers (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
