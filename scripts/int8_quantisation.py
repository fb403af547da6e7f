"""Is an int8 ONNX model of the bundled generator good enough to ship, and the bundled int8 model
itself. Static quantisation (QDQ, per-channel int8 weights, uint8 activations; see
aerocolor.infer.int8) calibrated on real gray tiles of color/train, then the fp32 and int8 models
colorize a spread sample of the selection half of color/val, timed in turns. Prints mean
CIEDE2000 against the colour truth, between the two outputs, and megapixels/s. The rule: keep
int8 only if its mean CIEDE2000 against the truth differs from fp32's by less than 0.1.

    python scripts/int8_quantisation.py --images 40 --calibration 24 --layers all
    python scripts/int8_quantisation.py --write src/aerocolor/models/default_int8.onnx

``--layers blocks`` (the default) quantises only the residual blocks' 128->128 convolutions (most
of the work); ``--write`` saves that int8 model of the bundled checkpoint (what ``--backend int8``
and ``auto`` use; it records the checkpoint's SHA-256, so rebuild it whenever default.pt changes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from aerocolor.colorize import to_gray
from aerocolor.data.splits import val_half
from aerocolor.imageio import as_rgb, atomic_write, read_image
from aerocolor.infer import Colorizer, default_model_path
from aerocolor.infer.int8 import INT8_LAYERS, calibration_photos, file_digest, quantise_int8
from aerocolor.infer.onnx import OnnxGenerator, export_onnx
from aerocolor.infer.torch_backend import load_method
from aerocolor.metrics import mean_ciede2000

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def spread(files: list[Path], n: int) -> list[Path]:
    return [files[i] for i in np.linspace(0, len(files) - 1, min(n, len(files))).astype(int)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=40, help="selection-half images (spread sample)")
    ap.add_argument("--calibration", type=int, default=24, help="color/train tiles to calibrate on")
    ap.add_argument("--layers", choices=INT8_LAYERS, default="blocks",
                    help="quantise only the residual blocks' convolutions, or every convolution")
    ap.add_argument("--calibrate", choices=("percentile", "minmax", "entropy"), default="percentile",
                    help="how activation ranges are set from the calibration tiles")
    ap.add_argument("--write", type=Path, help="save the int8 model of the bundled checkpoint here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    checkpoint = default_model_path()
    method, config = load_method(checkpoint)
    fp32 = export_onnx(method, config)
    tiles = calibration_photos(DATA / "color/train", args.calibration)
    int8 = quantise_int8(fp32, tiles, args.layers, args.calibrate, source_digest=file_digest(checkpoint))
    if args.write:
        atomic_write(args.write, lambda tmp: Path(tmp).write_bytes(int8))
        print(f"wrote {args.write} ({len(int8) / 1e6:.1f} MB)")
    if args.images <= 0:
        return
    cpu = torch.device("cpu")
    models = {name: Colorizer(OnnxGenerator(data, cpu, name), config, cpu)
              for name, data in (("fp32", fp32), ("int8", int8))}
    scores = {name: [] for name in models}
    apart = []  # int8 against fp32
    seconds = dict.fromkeys(models, 0.0)
    pixels = 0
    for path in spread(val_half(DATA / "color/val", "selection"), args.images):
        truth = as_rgb(read_image(path))
        gray = to_gray(truth)
        pixels += gray.size
        colours = {}
        for name, colorizer in models.items():
            start = time.perf_counter()
            colours[name] = colorizer.colorize(gray)
            seconds[name] += time.perf_counter() - start
            scores[name].append(mean_ciede2000(colours[name], truth))
        apart.append(mean_ciede2000(colours["int8"], colours["fp32"]))
    print(f"{len(apart)} selection-half images of color/val; calibration on {len(tiles)} color/train "
          f"tiles; int8 layers: {args.layers}; ranges: {args.calibrate}")
    print("| model | mean CIEDE2000 | MP/s |")
    print("|---|---|---|")
    for name in models:
        print(f"| {name} | {np.mean(scores[name]):.3f} | {pixels / 1e6 / seconds[name]:.3f} |")
    change = np.mean(scores["int8"]) - np.mean(scores["fp32"])
    print(f"int8 against fp32 outputs: mean CIEDE2000 {np.mean(apart):.3f}")
    print(f"change {change:+.3f}: {'within' if abs(change) < 0.1 else 'beyond'} the 0.1 allowed")


if __name__ == "__main__":
    main()
