"""Schemas as plain data, turned into ``datasets.Features`` only when a table is written.

Every config's columns (the record, COCO, the chat layouts, the rejected rows) are declared once,
here in a form that imports nothing: ``"string"`` (any ``datasets.Value`` dtype) for a scalar,
``[item]`` for a list, :class:`Fixed` for a list of fixed length, :data:`IMAGE` for an embedded
image and a dict for a struct. :func:`features` makes the ``datasets.Features`` (and so the Arrow
schema with its Hugging Face metadata) from it, which keeps ``datasets`` out of the commands that
never write a table (``--help``, argument errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGE = "image"  # an embedded image: ``{"bytes", "path"}`` (``datasets.Image``)


@dataclass(frozen=True)
class Fixed:
    """A list of exactly ``length`` items (``datasets.List(item, length=...)``)."""

    item: Any
    length: int


def feature(spec: Any):
    """The ``datasets`` feature of one spec (see the module docstring)."""
    from datasets import Image, List, Value

    if spec == IMAGE:
        return Image()
    if isinstance(spec, str):
        return Value(spec)
    if isinstance(spec, Fixed):
        return List(feature(spec.item), length=spec.length)
    if isinstance(spec, list):
        (item,) = spec
        return List(feature(item))
    if isinstance(spec, dict):
        return {name: feature(value) for name, value in spec.items()}
    raise TypeError(f"not a schema spec: {spec!r}")


def features(columns: dict[str, Any]):
    """``datasets.Features`` of a table's columns."""
    from datasets import Features

    return Features(feature(columns))
