"""int8 models of an exported generator, run by onnxruntime (``--backend int8``).

The convolutions inside the residual blocks (the 128->128 3x3 layers that do most of a pass's
work) are quantised statically: QDQ nodes, int8 weights per output channel, uint8 activations
whose ranges are set from real gray tiles (99.999th percentile of each activation's histogram).
The first layers, the scene context and the output layer stay float32: quantising every
convolution moved mean CIEDE2000 on color/val by +0.17, beyond the 0.1 allowed; the blocks alone
stay within it (README, "Speed").

The bundled model's int8 copy (``models/default_int8.onnx``) records the SHA-256 of the
checkpoint it was made from, and is used only with that checkpoint; rebuild it after the
bundled model changes with ``python scripts/int8_quantisation.py --write``. Any checkpoint can be
quantised with ``aerocolor export CKPT --onnx OUT.onnx --int8 FOLDER`` (gray or colour photos to
calibrate on); OUT.onnx then runs like any exported model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

INT8_LAYERS = ("blocks", "all")
CALIBRATION_SIDE = 256  # one side for all tiles: the histogram calibrators stack them
SOURCE_KEY = "int8_of"  # metadata: SHA-256 of the checkpoint the int8 model was made from


def bundled_int8_path() -> Path:
    return Path(str(resources.files("aerocolor") / "models" / "default_int8.onnx"))


def per_file_version(fn):
    """``fn(path)`` computed once per file version (resolved path, size, modification time): one
    ``--backend auto`` load asks for the same file's digest several times."""
    cached = functools.lru_cache(maxsize=16)(lambda path, size, mtime_ns: fn(path))

    @functools.wraps(fn)
    def once(path: str | Path):
        resolved = Path(path).resolve()
        st = resolved.stat()
        return cached(str(resolved), st.st_size, st.st_mtime_ns)

    once.cache_clear = cached.cache_clear
    return once


@per_file_version
def file_digest(path: str | Path) -> str:
    """SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@per_file_version
def source_digest_of(path: str | Path) -> str | None:
    """The ``int8_of`` metadata of an int8 model file: the digest of the checkpoint it was made from."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get(SOURCE_KEY)


def block_convs(model) -> list[str]:
    """Names of the convolutions inside residual blocks (``.../body/...`` in an exported graph)."""
    return [n.name for n in model.graph.node if n.op_type == "Conv" and "/body/" in n.name]


def calibration_tile(gray: np.ndarray, side: int = CALIBRATION_SIDE) -> np.ndarray:
    """The centre ``side`` x ``side`` crop of a gray image in [0, 1] (reflected where it is
    smaller), as the generator's (1, 1, side, side) float32 input."""
    gray = np.asarray(gray, np.float32)
    if min(gray.shape) < side:
        gray = np.pad(gray, [(0, max(0, side - n)) for n in gray.shape], mode="reflect")
    t, lft = (gray.shape[0] - side) // 2, (gray.shape[1] - side) // 2
    return np.ascontiguousarray(gray[t:t + side, lft:lft + side])[None, None]


def calibration_photos(folder: Path, count: int = 24) -> list[np.ndarray]:
    """Calibration tiles from up to ``count`` photos of a folder, spread over its sorted list."""
    from ..color import gray_from_rgb, to_tensor
    from ..imageio import as_rgb, list_images, read_image

    if not Path(folder).is_dir():
        raise CheckpointError(f"--int8 {folder}: no such folder; give a folder of photos to calibrate on")
    files = list_images([str(folder)])
    if not files:
        raise CheckpointError(f"--int8 {folder}: no images in it (PNG, JPEG, TIFF); give a folder of photos")
    pick = np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)
    return [calibration_tile(gray_from_rgb(to_tensor(as_rgb(read_image(files[i]))))[0, 0].numpy())
            for i in sorted(set(pick))]


def quantise_int8(fp32: bytes, tiles: Iterable[np.ndarray], layers: str = "blocks",
                  method: str = "percentile", source_digest: str = "") -> bytes:
    """An int8 copy of an exported generator (:func:`aerocolor.infer.onnx.export_onnx` bytes),
    calibrated on gray ``tiles`` (each (1, 1, S, S) float32, all of one size); its metadata is
    the original's plus how it was quantised and, when given, ``source_digest``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if layers not in INT8_LAYERS:
        raise CheckpointError(f"int8 layers {layers!r}: choose {' or '.join(INT8_LAYERS)}")
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    tiles = list(tiles)
    if not tiles:
        raise CheckpointError("int8 quantisation needs at least one calibration image")
    model = onnx.load_from_string(fp32)
    nodes = block_convs(model) if layers == "blocks" else None
    if layers == "blocks" and not nodes:
        raise CheckpointError("this generator has no residual blocks to quantise (a ResNet generator has)")

    class Tiles(CalibrationDataReader):
        def __init__(self):
            self.left = iter(tiles)

        def get_next(self):
            tile = next(self.left, None)
            return None if tile is None else {"gray": tile}

    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):  # its progress prints
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_static(str(src), str(dst), Tiles(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, nodes_to_quantize=nodes,
                        calibrate_method=methods[method], activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        quantised = onnx.load(str(dst))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({"int8_layers": layers, "int8_calibration": f"{len(tiles)} tiles, {method}"})
    if source_digest:
        props[SOURCE_KEY] = source_digest
    onnx.helper.set_model_props(quantised, props)
    return quantised.SerializeToString()


def int8_model_for(checkpoint: Path) -> Path | None:
    """The bundled int8 model when ``checkpoint`` is the file it was made from, else None."""
    path = bundled_int8_path()
    if not path.is_file():
        return None
    return path if source_digest_of(path) == file_digest(checkpoint) else None
