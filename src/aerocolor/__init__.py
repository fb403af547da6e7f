"""aerocolor: colorize historical grayscale aerial photographs with GANs."""

__version__ = "0.1.0"
