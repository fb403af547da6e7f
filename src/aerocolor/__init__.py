"""aerocolor: colorize historical grayscale aerial photographs with GANs."""

from .runtime import set_process_defaults

set_process_defaults()  # before anything imports torch

__version__ = "0.1.0"
