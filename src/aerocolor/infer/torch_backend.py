"""The torch runtime of a generator: a method's networks, loaded from a checkpoint."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint import checkpoint_config, load_checkpoint
from ..color import net_input
from ..config import Config
from ..errors import CheckpointError
from ..methods import Method, get_method
from ..methods.base import unwrap
from ..nets.generators import ContextPool
from ..nets.layers import StatsComplete, StatsScope, WholeInputStats, fold_batch_norms, stats_scope
from ..runtime import cpu_bf16
from .generator import StatsBatches, merge_moments


def instance_norms(net: nn.Module) -> list[nn.Module]:
    """The layers whose output depends on statistics of the whole input: instance norms (without
    running statistics) and scene-context pools. All are called norms below."""
    return [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm | ContextPool)
            and not m.track_running_stats]


def z_dim(method: Method) -> int:
    """Length of a multimodal method's latent code (0 for the others)."""
    if not method.multimodal:
        return 0
    for n in (getattr(method, "nz", None), getattr(method.opts, "nz", None),
              method.cfg.options.get("nz")):
        if n:
            return int(n)
    raise CheckpointError(f"method {method.name!r} is multimodal but names no latent size (nz)")


def inference_copy(method: Method, device: torch.device, channels_last: bool = True) -> Method:
    """A copy of a method for inference only: its inference networks copied, in eval mode, batch
    norms folded into the convolutions and (``channels_last``) weights in NHWC order, which
    oneDNN's CPU and cuDNN's convolutions run faster. The method itself, maybe still training,
    is untouched."""
    inference = copy.copy(method)
    inference._modules = dict(method._modules)
    for name in method.inference_nets:
        net = getattr(method, name, None)
        if net is None:
            continue
        net = copy.deepcopy(unwrap(net)).to(device).eval()
        fold_batch_norms(net)
        inference._modules[name] = net.to(memory_format=torch.channels_last) if channels_last else net
    inference.training = False
    return inference


# autocast dtype of each precision (None: none); bfloat16 keeps float32's range, so no scaling
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}


def default_precision(device: torch.device) -> str:
    """bfloat16 on a GPU (tensor cores run it several times faster than float32) and on a CPU that
    computes it natively (:func:`~aerocolor.runtime.cpu_bf16`: 1.6x float32 there, colours within
    0.05 mean CIEDE2000), else float32: CPUs without bfloat16 units run it slower."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16()):
        return "bfloat16"
    return "float32"


class TorchGenerator:
    """A method's generator: gray in [0, 1] (N,1,H,W) -> raw output, with torch. Safe to call
    from many threads: statistics travel with each call (a per-thread scope), never on modules.
    Runs an :func:`inference_copy` of the method (``fast`` False: the method as it is), its
    convolutions in ``precision`` (see :data:`PRECISIONS`; auto: :func:`default_precision`),
    the output always float32."""

    def __init__(self, method: Method, device: torch.device, fast: bool = True, precision: str = "auto"):
        precision = default_precision(device) if precision == "auto" else precision
        if precision not in PRECISIONS:
            raise CheckpointError(f"unknown precision {precision!r}: choose auto, {', '.join(PRECISIONS)}")
        self.precision = precision
        self.method = inference_copy(method, device) if fast else method.to(device).eval()
        self.memory_format = torch.channels_last if fast else torch.contiguous_format
        self.device = device
        self.mode = method.mode
        self.size_multiple = method.size_multiple
        self.out_channels = method.out_channels
        self.multimodal = method.multimodal
        self.z_dim = z_dim(method)
        self.instance_norm = bool(instance_norms(method))
        self.reference_channels = method.reference_channels
        self._norm_calls: int | None = None  # norm calls in one pass, counted on first use
        self._count_lock = threading.Lock()

    def __call__(self, gray: torch.Tensor, z: torch.Tensor | None,
                 stats: WholeInputStats | None = None, ref: torch.Tensor | None = None) -> torch.Tensor:
        with stats_scope(StatsScope(given=stats or None)), self._autocast():
            out = self.method.generate(self._input(gray), z, ref)
        return out.float().contiguous()

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def _input(self, gray: torch.Tensor) -> torch.Tensor:
        return net_input(gray, self.mode).contiguous(memory_format=self.memory_format)

    def norm_calls(self, z: torch.Tensor | None) -> int:
        """How many times one pass calls a norm, counted on a small input once."""
        with self._count_lock:
            if self._norm_calls is None:
                side = max(64, self.size_multiple)
                gray = torch.zeros(1, 1, side, side, device=self.device)
                with torch.no_grad(), stats_scope(StatsScope(pool=True)) as scope:
                    self.method.generate(net_input(gray, self.mode), None if z is None else z[:1])
                self._norm_calls = scope.calls
        return self._norm_calls

    def pooled_norm_stats(self, gray: torch.Tensor, z: torch.Tensor | None,
                          ref: torch.Tensor | None = None) -> WholeInputStats:
        """Run a batch with every norm pooled over the whole batch; their statistics. The pass
        stops at the last norm (a scene context sits mid-network, so about half is skipped)."""
        return self._pooled(gray, z, ref, None, self.norm_calls(z))

    def _pooled(self, gray: torch.Tensor, z: torch.Tensor | None, ref: torch.Tensor | None,
                given: WholeInputStats | None, layers: int) -> WholeInputStats:
        """The pooled statistics of the first ``layers`` norms not in ``given`` (which use those)."""
        with stats_scope(StatsScope(given=given, pool=True, stop_after=layers)) as scope, self._autocast():
            try:
                self.method.generate(self._input(gray), z, ref)
            except StatsComplete:
                pass
        return scope.pooled

    def stats_waves(self, z: torch.Tensor | None) -> int:
        return self.norm_calls(z)

    def accumulated_norm_stats(self, batches: StatsBatches) -> WholeInputStats:
        """One pass over the batches per norm, in the order they run: each pass stops at its norm,
        the norms before it normalising with their finished statistics."""
        done: WholeInputStats = {}
        while True:
            parts, layer, z = [], None, None
            for gray, z, ref in batches():
                found = self._pooled(gray, z, ref, done, 1)
                if len(found) != 1:
                    raise ValueError("accumulated_norm_stats needs a generator with whole-input layers "
                                     "(check stats_waves() > 0 first)")
                ((layer, (mean, var)),) = found.items()
                parts.append((gray.shape[0] * gray.shape[-2] * gray.shape[-1], mean, var))
            if not parts:
                raise ValueError("accumulated_norm_stats got no batches")
            done[layer] = merge_moments(parts)
            if len(done) >= self.norm_calls(z):
                return done

    def latent_codes(self, count: int, generator: torch.Generator, ref: torch.Tensor | None
                     ) -> torch.Tensor:
        return self.method.latent_codes(count, generator, ref).to(self.device)


def load_method(path: Path) -> tuple[Method, Config]:
    """Build a checkpoint's method (inference networks only) in eval-ready float32."""
    ckpt = load_checkpoint(path)
    config = checkpoint_config(ckpt, str(path))
    method = get_method(config.model.method)(config.model, training=False)
    try:
        method.load_nets_state({k: v for k, v in ckpt["nets"].items()
                                if k in method.inference_nets})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match its config ({e})") from None
    return method.float().eval(), config
