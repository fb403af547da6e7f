"""Inference: the colorizer used by the CLI, evaluation, rasters, the web app and export.

``generator`` defines what a colorizer needs of a runtime; ``torch_backend`` and ``onnx`` provide
it; ``colorizer`` knows only that protocol; ``loading`` picks the runtime for a file.
"""

from .colorizer import Colorizer
from .generator import pick_device
from .loading import default_model_path, load_colorizer, reference_model_path, torch_colorizer

__all__ = ["Colorizer", "default_model_path", "load_colorizer", "pick_device", "reference_model_path",
           "torch_colorizer"]
