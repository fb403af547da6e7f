"""ONNX export of any method's generator, and running it with onnxruntime.

The exported graph takes ``gray`` (N,1,H,W) sRGB gray in [0, 1] (H and W multiples of the
``size_multiple`` in its metadata, any size otherwise) and, for multimodal methods, ``z``
(N, z_dim). It returns ``raw``, the generator's output (RGB in [-1, 1], or a*/110, b*/110 in
``lab`` mode), and ``rgb``, the colour image in [0, 1] with the lab recombination done inside
(the full-resolution L* of the input joined with the predicted ab). The metadata holds the colour
mode, the normalisation, the tile size and overlap to use and the full training config, so the
file is self-describing like a checkpoint.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
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
from .colorizer import DEFAULT_OVERLAP, DEFAULT_TILE, Colorizer, instance_norms, load_method, z_dim

log = logging.getLogger("aerocolor")

OPSET = 17
NORMALISATION = {
    "rgb": "input: gray*2-1; raw output: RGB in [-1, 1], colour = (raw+1)/2",
    "lab": (f"input: L*/{L_SCALE:g}-1 of the gray (neutral sRGB gray of equal L*); raw output: "
            f"a*/{AB_SCALE:g}, b*/{AB_SCALE:g}; colour = sRGB of (input L*, raw*{AB_SCALE:g})"),
}


class ExportedGenerator(nn.Module):
    """gray in [0, 1] (and z) -> (raw output, colour in [0, 1]) for one method."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, gray: torch.Tensor, z: torch.Tensor | None = None):
        raw = self.method.generate(net_input(gray, self.method.mode), z)
        return raw, rgb_from_output(raw, gray, self.method.mode)


def onnx_metadata(method: Method, config: Config, tile: int, overlap: int) -> dict[str, str]:
    norms = instance_norms(method)
    return {
        "producer": f"aerocolor {__version__}",
        "method": config.model.method,
        "color_mode": method.mode,
        "normalisation": NORMALISATION[method.mode],
        "inputs": "gray: N x 1 x H x W float32 sRGB gray in [0, 1]"
                  + ("; z: N x z_dim float32 latent code" if method.multimodal else ""),
        "outputs": "raw: generator output; rgb: N x 3 x H x W float32 sRGB in [0, 1]",
        "size_multiple": str(method.size_multiple),
        "out_channels": str(method.out_channels),
        "multimodal": str(int(method.multimodal)),
        "z_dim": str(z_dim(method)),
        "tile": str(tile),
        "overlap": str(overlap),
        "instance_norm": "per_tile" if norms else "none",
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
    m = method.size_multiple
    size = max(m, 64 // m * m)
    example: tuple = (torch.rand(1, 1, size, size),)
    names, axes = ["gray"], {"gray": {0: "batch", 2: "height", 3: "width"},
                             "raw": {0: "batch", 2: "height", 3: "width"},
                             "rgb": {0: "batch", 2: "height", 3: "width"}}
    if method.multimodal:
        example += (torch.zeros(1, z_dim(method)),)
        names.append("z")
        axes["z"] = {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ExportedGenerator(method), example, buf, input_names=names,
                          output_names=["raw", "rgb"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, onnx_metadata(method, config, tile, overlap))
    model.doc_string = __doc__.split("\n\n")[1].replace("\n", " ")
    data = model.SerializeToString()
    if out is not None:
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return data


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
        try:
            self.session = ort.InferenceSession(model, providers=providers)
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

    def __call__(self, gray: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        feeds = {"gray": gray.detach().float().cpu().numpy()}
        if self.multimodal:
            zz = torch.zeros(gray.shape[0], self.z_dim) if z is None else z
            feeds["z"] = np.ascontiguousarray(zz.detach().float().cpu().numpy())
        raw = self.session.run(["raw"], feeds)[0]
        return torch.from_numpy(raw).to(gray.device)


def load_onnx_colorizer(path: Path, device: str = "auto") -> Colorizer:
    """A colorizer running an ``.onnx`` file, or a checkpoint exported to ONNX in memory."""
    from .colorizer import pick_device

    dev = pick_device(device)
    if path.suffix.lower() == ".onnx":
        gen = OnnxGenerator(str(path), dev, str(path))
    else:
        method, config = load_method(path)
        gen = OnnxGenerator(export_onnx(method, config), dev, str(path))
    if gen.meta["instance_norm"] == "per_tile":
        log.warning("%s: with onnxruntime each tile's instance norms use that tile's own "
                    "statistics, so colours can shift between tiles of large inputs; the torch "
                    "backend shares them across the whole input", path)
    return Colorizer(gen, gen.config, dev, str(path))
