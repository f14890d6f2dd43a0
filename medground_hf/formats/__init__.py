"""Derived formats of a built folder: COCO + RefCOCO refs and the chat dialects of VLM trainers."""

from .chat import DIALECTS, get_dialect
from .configs import derived_configs, remove_format_configs, write_format_configs

__all__ = [
    "DIALECTS",
    "derived_configs",
    "get_dialect",
    "remove_format_configs",
    "write_format_configs",
]
