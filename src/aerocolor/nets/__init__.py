"""Networks built by name: generators, discriminators and their initialisation."""

from .discriminators import build_discriminator
from .generators import build_generator, size_multiple
from .layers import init_weights

__all__ = ["build_generator", "build_discriminator", "init_weights", "size_multiple"]
