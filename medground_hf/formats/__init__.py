"""Derived formats of a built folder: COCO + RefCOCO refs and the chat dialects of VLM trainers."""

from .chat import DIALECTS, get_dialect
from .names import FORMATS, derived_configs

__all__ = [
    "DIALECTS",
    "FORMATS",
    "derived_configs",
    "get_dialect",
    "remove_format_configs",
    "write_format_configs",
]


def __getattr__(name: str):
    # the writers need Arrow: imported when first used, so listing formats stays cheap
    if name in ("remove_format_configs", "write_format_configs"):
        from . import configs

        return getattr(configs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
