"""Methods by name. Adding a method: one new file and one import line here."""

from . import (  # noqa: F401 (each import registers a method)
    bicyclegan,
    cut,
    cyclegan,
    hybrid,
    pix2pix,
)
from .base import METHODS, Method, get_method, register

__all__ = ["METHODS", "Method", "get_method", "register"]
