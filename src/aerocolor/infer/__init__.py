"""Inference: the colorizer used by the CLI, evaluation, rasters, the web app and export."""

from .colorizer import Colorizer, default_model_path, pick_device

__all__ = ["Colorizer", "default_model_path", "pick_device"]
