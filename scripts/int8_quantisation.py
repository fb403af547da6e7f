"""Is an int8 ONNX model of the bundled generator good enough to ship? Static quantisation (QDQ,
per-channel int8 weights, uint8 activations of every convolution) calibrated on real gray tiles
of color/train, then the fp32 and int8 models colorize a spread sample of the selection half of
color/val, timed in turns. Prints mean CIEDE2000 against the colour truth and megapixels/s.
The rule: keep int8 only if its mean CIEDE2000 differs from fp32's by less than 0.1.

    python scripts/int8_quantisation.py --images 40 --calibration 24
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from aerocolor.colorize import to_gray
from aerocolor.imageio import as_rgb, list_images, read_image
from aerocolor.infer import Colorizer, default_model_path
from aerocolor.infer.onnx import OnnxGenerator, export_onnx
from aerocolor.infer.torch_backend import load_method
from aerocolor.metrics import mean_ciede2000

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CALIBRATION_SIDE = 256


def spread(files: list[Path], n: int) -> list[Path]:
    return [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).astype(int)]


def selection_half() -> list[Path]:
    """The first half of each sorted subfolder of color/val (as scripts/evaluate_default_model.py)."""
    files = []
    for sub in sorted((DATA / "color/val").iterdir()):
        items = list_images(sub)
        files += items[:len(items) // 2]
    return files


class GrayTiles(CalibrationDataReader):
    """Real gray tiles (centre crops) of color/train photos, one per calibration batch."""

    def __init__(self, files: list[Path]):
        self.tiles = iter([self.tile(f) for f in files])

    @staticmethod
    def tile(path: Path) -> np.ndarray:
        gray = to_gray(as_rgb(read_image(path)))
        s = min(CALIBRATION_SIDE, *gray.shape) // 8 * 8  # the generator takes multiples of 4
        t, lft = (gray.shape[0] - s) // 2, (gray.shape[1] - s) // 2
        return np.ascontiguousarray(gray[t:t + s, lft:lft + s], np.float32)[None, None]

    def get_next(self):
        tile = next(self.tiles, None)
        return None if tile is None else {"gray": tile}


def quantised(fp32: bytes, calibration: list[Path]) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "fp32.onnx", Path(d) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_static(str(src), str(dst), GrayTiles(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        model = onnx.load(str(dst))
    props = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=40, help="selection-half images (spread sample)")
    ap.add_argument("--calibration", type=int, default=24, help="color/train tiles to calibrate on")
    args = ap.parse_args()
    torch.set_num_threads(2)
    method, config = load_method(default_model_path())
    fp32 = export_onnx(method, config)
    int8 = quantised(fp32, spread(list_images(DATA / "color/train"), args.calibration))
    cpu = torch.device("cpu")
    models = {name: Colorizer(OnnxGenerator(data, cpu, name), config, cpu)
              for name, data in (("fp32", fp32), ("int8", int8))}
    scores = {name: [] for name in models}
    seconds = dict.fromkeys(models, 0.0)
    pixels = 0
    for path in spread(selection_half(), args.images):
        truth = as_rgb(read_image(path))
        gray = to_gray(truth)
        pixels += gray.size
        for name, colorizer in models.items():
            start = time.perf_counter()
            colour = colorizer.colorize(gray)
            seconds[name] += time.perf_counter() - start
            scores[name].append(mean_ciede2000(colour, truth))
    print(f"{len(scores['fp32'])} selection-half images of color/val; calibration on "
          f"{args.calibration} color/train tiles of {CALIBRATION_SIDE} px")
    print("| model | mean CIEDE2000 | MP/s |")
    print("|---|---|---|")
    for name in models:
        print(f"| {name} | {np.mean(scores[name]):.3f} | {pixels / 1e6 / seconds[name]:.3f} |")
    change = np.mean(scores["int8"]) - np.mean(scores["fp32"])
    print(f"change {change:+.3f}: {'within' if abs(change) < 0.1 else 'beyond'} the 0.1 allowed")


if __name__ == "__main__":
    main()
