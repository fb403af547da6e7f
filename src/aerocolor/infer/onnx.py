"""ONNX export of any method's generator, and running it with onnxruntime.

The exported graph takes ``gray`` (N,1,H,W) sRGB gray in [0, 1] (H and W multiples of the
``size_multiple`` in its metadata, any size otherwise) and, for multimodal methods, ``z`` (N,
z_dim), and for reference models ``reference`` (N,4,H,W), the colour reference's planes (see
:mod:`aerocolor.reference`; zeros: no reference). It returns ``raw``, the generator's output (RGB
in [-1, 1], or a*/110, b*/110 in ``lab`` mode), and ``rgb``, the colour image in [0, 1] with the
lab recombination done inside (the full-resolution L* of the input joined with the predicted ab).
The metadata holds the colour mode, the normalisation, the tile size and overlap to use and the
full training config, so the file is self-describing like a checkpoint.

Instance-normalised generators get two more inputs, both optional (they have defaults), and one
more output, so that tiles of a large input can share normalisation statistics as they do with
the torch backend: ``norm_weights`` (3,) mixes, in every instance norm, the input's own
statistics, the statistics pooled over the whole batch and the given ``norm_stats`` (S,) (each
norm layer's per-channel means, then variances, in layer order); the default (1, 0, 0) is plain
instance norm. The output ``pooled_norm_stats`` holds the batch-pooled statistics of a run, so a run
over tiles sampled across the input with ``norm_weights`` (0, 1, 0) gives the statistics that a
run of every tile then uses with (0, 0, 1). The scene-context pools of ResNet generators take part
in the same way (their means and variances are in ``norm_stats`` too, in the order they run).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import __version__
from ..color import AB_SCALE, L_SCALE, net_input, rgb_from_output
from ..config import Config, build_config
from ..errors import CheckpointError
from ..imageio import atomic_write
from ..methods import Method
from ..nets.generators import ContextPool
from .generator import DEFAULT_OVERLAP, DEFAULT_TILE, StatsBatches, merge_moments
from .torch_backend import instance_norms, z_dim

log = logging.getLogger("aerocolor")

OPSET = 17
NORMALISATION = {
    "rgb": "input: gray*2-1; raw output: RGB in [-1, 1], colour = (raw+1)/2",
    "lab": (f"input: L*/{L_SCALE:g}-1 of the gray (neutral sRGB gray of equal L*); raw output: "
            f"a*/{AB_SCALE:g}, b*/{AB_SCALE:g}; colour = sRGB of (input L*, raw*{AB_SCALE:g})"),
}


class MixedStats(nn.Module):
    """A layer that uses whole-input statistics (an instance norm or a scene-context pool), with
    statistics that are a weighted mix of the input's own, the batch's pooled and given ones (see
    the module docstring); it records the pooled ones."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.num_features = layer.num_features
        self.mix: torch.Tensor | None = None  # (3,), set per run
        self.given: tuple[torch.Tensor, torch.Tensor] | None = None  # (C,), (C,)
        self.pooled: tuple[torch.Tensor, torch.Tensor] | None = None

    def mixed_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed per-channel (mean, variance), each (N, C, 1, 1): the own term is per image."""
        own_mean = x.mean(dim=(2, 3), keepdim=True)
        own_var = (x - own_mean).pow(2).mean(dim=(2, 3), keepdim=True)
        pool_mean = x.mean(dim=(0, 2, 3), keepdim=True)
        pool_var = (x - pool_mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        self.pooled = (pool_mean.flatten(), pool_var.flatten())
        given_mean, given_var = (g.view(1, -1, 1, 1) for g in self.given)
        w = self.mix
        mean = w[0] * own_mean + w[1] * pool_mean + w[2] * given_mean
        var = w[0] * own_var + w[1] * pool_var + w[2] * given_var
        return mean, var


class MixedStatsInstanceNorm(MixedStats):
    """An instance norm that normalises with the mixed statistics."""

    def __init__(self, norm: nn.modules.instancenorm._InstanceNorm):
        super().__init__(norm)
        self.eps, self.affine = norm.eps, norm.affine
        if norm.affine:
            self.weight, self.bias = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.mixed_stats(x)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


class MixedStatsContextPool(MixedStats):
    """A scene-context pool (:class:`ContextPool`) whose mean is the mixed one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixed_stats(x)[0].flatten(1)


def example_inputs(method: Method) -> tuple[torch.Tensor, ...]:
    m = method.size_multiple
    size = max(m, 64 // m * m)
    example: tuple = (torch.rand(1, 1, size, size),)
    example += (torch.zeros(1, z_dim(method)),) if method.multimodal else ()
    return example + ((torch.zeros(1, method.reference_channels, size, size),)
                      if method.reference_channels else ())


@torch.no_grad()
def generator_instance_norms(method: Method) -> list[nn.Module]:
    """The instance norms that the generator runs, in the order it runs them (a method's other
    inference networks, e.g. BicycleGAN's encoder, are not part of the exported graph)."""
    norms, order = instance_norms(method), []
    hooks = [m.register_forward_pre_hook(lambda mod, _: order.append(mod)) for m in norms]
    try:
        gray, *extra = example_inputs(method)
        method.generate(net_input(gray, method.mode), extra[0] if method.multimodal else None)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(order))


class ExportedGenerator(nn.Module):
    """gray in [0, 1] (and z, and for instance norms the statistics inputs) -> (raw output,
    colour in [0, 1], and for instance norms the batch-pooled statistics) for one method;
    ``chroma`` scales the colour's a*, b* (the model's calibrated saturation)."""

    def __init__(self, method: Method, chroma: float = 1.0):
        super().__init__()
        self.chroma = chroma
        self.method = copy.deepcopy(method)
        runs = generator_instance_norms(self.method)
        mixed = {id(m): (MixedStatsContextPool if isinstance(m, ContextPool) else MixedStatsInstanceNorm)(m)
                 for m in runs}
        for parent in list(self.method.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in mixed:
                    setattr(parent, name, mixed[id(child)])
        self.norms = [mixed[id(m)] for m in runs]  # in the order the generator runs them
        self.norm_stats_size = sum(2 * m.num_features for m in self.norms)

    def forward(self, gray: torch.Tensor, *extra: torch.Tensor):
        z = extra[0] if self.method.multimodal else None
        ref = extra[int(self.method.multimodal)] if self.method.reference_channels else None
        if self.norms:
            stats, mix = extra[-2:]
            at = 0
            for m in self.norms:
                c = m.num_features
                m.mix, m.given = mix, (stats[at:at + c], stats[at + c:at + 2 * c])
                at += 2 * c
        raw = self.method.generate(net_input(gray, self.method.mode), z, ref)
        rgb = rgb_from_output(raw, gray, self.method.mode, self.chroma)
        if not self.norms:
            return raw, rgb
        return raw, rgb, torch.cat([t for m in self.norms for t in m.pooled])


def onnx_metadata(method: Method, config: Config, tile: int, overlap: int, norm_stats_size: int,
                  norm_layers: int) -> dict[str, str]:
    norms = norm_stats_size > 0
    return {
        "producer": f"aerocolor {__version__}",
        "method": config.model.method,
        "color_mode": method.mode,
        "normalisation": NORMALISATION[method.mode],
        "inputs": "gray: N x 1 x H x W float32 sRGB gray in [0, 1]"
                  + ("; z: N x z_dim float32 latent code" if method.multimodal else "")
                  + ("; reference: N x 4 x H x W float32 colour reference planes (a*/110, b*/110, valid, "
                     "palette; zeros: none)" if method.reference_channels else "")
                  + ("; norm_stats: S float32 (optional); norm_weights: 3 float32 (optional, default 1,0,0 = "
                     "plain instance norm)" if norms else ""),
        "outputs": "raw: generator output; rgb: N x 3 x H x W float32 sRGB in [0, 1]"
                   + ("; pooled_norm_stats: S float32 batch-pooled instance-norm statistics" if norms else ""),
        "size_multiple": str(method.size_multiple),
        "out_channels": str(method.out_channels),
        "multimodal": str(int(method.multimodal)),
        "z_dim": str(z_dim(method)),
        "reference_channels": str(method.reference_channels),
        "tile": str(tile),
        "overlap": str(overlap),
        "instance_norm": "shared_stats_inputs" if norms else "none",
        "norm_stats_size": str(norm_stats_size),
        "norm_layers": str(norm_layers),
        "ground_resolution": "" if config.model.ground_resolution is None
        else str(config.model.ground_resolution),
        "config": json.dumps(config.model_dump(mode="json")),
    }


def export_onnx(method: Method, config: Config, out: str | Path | None = None,
                tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> bytes:
    """Export a method's generator to ONNX (dynamic batch, height and width); returns the bytes
    and writes them to ``out`` when it is a path."""
    import onnx

    method = method.float().eval().cpu()
    example = example_inputs(method)
    names, axes = ["gray"], {"gray": {0: "batch", 2: "height", 3: "width"},
                             "raw": {0: "batch", 2: "height", 3: "width"},
                             "rgb": {0: "batch", 2: "height", 3: "width"}}
    if method.multimodal:
        names.append("z")
        axes["z"] = {0: "batch"}
    if method.reference_channels:
        names.append("reference")
        axes["reference"] = {0: "batch", 2: "height", 3: "width"}
    outputs = ["raw", "rgb"]
    exported = ExportedGenerator(method, config.model.chroma)
    n_stats = exported.norm_stats_size
    defaults = {}
    if n_stats:
        defaults = {"norm_stats": torch.zeros(n_stats), "norm_weights": torch.tensor([1.0, 0.0, 0.0])}
        example += tuple(defaults.values())
        names += list(defaults)
        outputs.append("pooled_norm_stats")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(exported, example, buf, input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    for name, value in defaults.items():  # an initializer named like an input is its default
        model.graph.initializer.append(onnx.numpy_helper.from_array(value.numpy(), name))
    onnx.helper.set_model_props(model, onnx_metadata(method, config, tile, overlap, n_stats,
                                                        len(exported.norms)))
    model.doc_string = __doc__.split("\n\n")[1].replace("\n", " ")
    data = model.SerializeToString()
    if out is not None:
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return data


_ARENA_LOCK = threading.Lock()
_arena_registered = False


def register_cpu_arena() -> None:
    """Once per process: a CPU memory arena shared by the sessions that grows by what is asked
    (kSameAsRequested), not by doubling its last extension."""
    global _arena_registered
    import onnxruntime as ort

    with _ARENA_LOCK:
        if not _arena_registered:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
            _arena_registered = True


def session_options():
    """onnxruntime options: every graph optimisation, torch's thread count, no spinning threads
    where OpenMP is asked to wait passively (a shared machine, see aerocolor.runtime), and less
    memory held: the shared arena of :func:`register_cpu_arena` and no memory pattern (a block
    planned per input shape); on a 2048 px raster the peak fell by 300 MB at the same speed."""
    import onnxruntime as ort

    register_cpu_arena()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: defaulted inputs would warn on every load
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.use_env_allocators", "1")
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxGenerator:
    """An exported generator run by onnxruntime: gray (N,1,H,W) in [0, 1] -> raw output."""

    def __init__(self, model: bytes | str, device: torch.device, source: str):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise CheckpointError("onnxruntime here has no CUDA support; use --device cpu "
                                      "or install onnxruntime-gpu")
            providers.insert(0, "CUDAExecutionProvider")
        options = session_options()
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as e:  # onnxruntime raises its own kinds for a bad file
            raise CheckpointError(f"{source}: not a readable ONNX model ({e})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "config" not in meta:
            raise CheckpointError(f"{source}: not exported by aerocolor (no config in its "
                                  "metadata); export it with 'aerocolor export CKPT --onnx OUT'")
        self.meta = meta
        self.config = build_config(json.loads(meta["config"]), source)
        self.mode = meta["color_mode"]
        self.size_multiple = int(meta["size_multiple"])
        self.out_channels = int(meta["out_channels"])
        self.multimodal = meta["multimodal"] == "1"
        self.z_dim = int(meta["z_dim"])
        self.reference_channels = int(meta.get("reference_channels", "0"))
        inputs = {i.name for i in self.session.get_inputs() + self.session.get_overridable_initializers()}
        self.instance_norm = meta.get("instance_norm") != "none"
        if self.instance_norm and "norm_stats" not in inputs:
            raise CheckpointError(f"{source}: exported by an older aerocolor without instance-norm statistics "
                                  "inputs; export it again with 'aerocolor export CKPT --onnx OUT'")
        # the statistics graph is built for each statistics pass and dropped after it: its
        # session holds its own copy of the weights, not needed while tiles run
        self._stats_source = (model, options, providers) if self.instance_norm else None
        self.stats_session = None
        # the arena hands its free chunks back after each run: without it, chunks cut for one
        # shape (statistics blocks, a tile) sat beside those of the next (+400 MB at 16384 px wide)
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.norm_stats_size = int(meta.get("norm_stats_size", 0))
        self.norm_layers = int(meta.get("norm_layers", 0))  # 0: not recorded (an older export)

    @staticmethod
    def stats_only(model: bytes | str, options, providers: list[str]):
        """A session of the graph cut after its last whole-input layer: onnxruntime runs every
        node of a graph whatever outputs are asked for, so a statistics pass of the full graph
        would also run the half of the network after the scene context."""
        import onnx
        import onnxruntime as ort
        from onnx.utils import Extractor

        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        inputs = [i.name for i in proto.graph.input]
        cut = Extractor(proto).extract_model(inputs, ["pooled_norm_stats"])
        return ort.InferenceSession(cut.SerializeToString(), options, providers=providers)

    def _feeds(self, gray: torch.Tensor, z: torch.Tensor | None, weights: tuple[float, float, float] | None,
               stats: np.ndarray | None = None, ref: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        feeds = {"gray": np.ascontiguousarray(gray.detach().float().cpu().numpy())}
        if self.reference_channels:
            planes = gray.new_zeros(gray.shape[0], self.reference_channels, *gray.shape[-2:]) if ref is None else ref
            feeds["reference"] = np.ascontiguousarray(planes.detach().float().cpu().numpy())
        if self.multimodal:
            zz = torch.zeros(gray.shape[0], self.z_dim) if z is None else z
            feeds["z"] = np.ascontiguousarray(zz.detach().float().cpu().numpy())
        if weights is not None:
            feeds["norm_weights"] = np.asarray(weights, np.float32)
            if stats is not None:
                feeds["norm_stats"] = stats
        return feeds

    def __call__(self, gray: torch.Tensor, z: torch.Tensor | None,
                 stats: np.ndarray | None = None, ref: torch.Tensor | None = None) -> torch.Tensor:
        weights = (0.0, 0.0, 1.0) if stats is not None else None
        raw = self.session.run(["raw"], self._feeds(gray, z, weights, stats, ref), self.run_options)[0]
        return torch.from_numpy(raw).to(gray.device)

    @contextmanager
    def statistics_graph(self):
        """The session of :meth:`stats_only` while the block runs: built on entry unless an outer
        block holds it, and dropped when the block that built it ends."""
        if self._stats_source is None:
            raise CheckpointError("this ONNX model has no whole-input layers: it needs no statistics pass")
        owner = self.stats_session is None
        if owner:
            self.stats_session = self.stats_only(*self._stats_source)
        try:
            yield self.stats_session
        finally:
            if owner:
                self.stats_session = None

    def pooled_norm_stats(self, gray: torch.Tensor, z: torch.Tensor | None,
                          ref: torch.Tensor | None = None) -> np.ndarray:
        """Run a batch with every instance norm pooled over the whole batch; their statistics."""
        unused = np.zeros(self.norm_stats_size, np.float32)  # the cut graph keeps no input defaults
        feeds = self._feeds(gray, z, (0.0, 1.0, 0.0), unused, ref)
        with self.statistics_graph() as session:
            names = {i.name for i in session.get_inputs()}
            feeds = {k: v for k, v in feeds.items() if k in names}
            return session.run(["pooled_norm_stats"], feeds, self.run_options)[0]

    def stats_waves(self, z: torch.Tensor | None) -> int:
        """1 for a graph with one whole-input layer; 0 (one batch) with more: its statistics
        inputs mix the same way in every layer, so layers cannot be pooled one after another."""
        return int(self.norm_layers == 1)

    def accumulated_norm_stats(self, batches: StatsBatches) -> np.ndarray:
        parts = []
        with self.statistics_graph():
            for gray, z, ref in batches():
                pooled = torch.from_numpy(self.pooled_norm_stats(gray, z, ref))
                half = len(pooled) // 2
                parts.append((gray.shape[0] * gray.shape[-2] * gray.shape[-1], pooled[:half], pooled[half:]))
        return torch.cat(merge_moments(parts)).numpy()
