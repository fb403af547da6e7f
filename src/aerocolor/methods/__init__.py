"""Methods by name. Adding a method: one new file and one import line here."""

from . import pix2pix  # noqa: F401
from .base import METHODS, Method, get_method, register

__all__ = ["METHODS", "Method", "get_method", "register"]
