"""``label_map`` of the sources whose structures have names (DICOM segments and RT ROIs, COCO
categories): rename one (``{"GTV_1": "tumour"}``), merge several (two names to one) or leave one
out (``null``). A key matches a name as written or in id form (``"gtv 1"`` matches ``GTV_1``).
"""

from __future__ import annotations

from collections.abc import Mapping

from .volume_base import slug


def normalise(table: Mapping) -> dict[str, str | None]:
    """Keys and values as text (command-line JSON may give numbers); ``None`` stays None."""
    return {str(k): (None if v is None else str(v)) for k, v in dict(table).items()}


def mapped(name: str, table: Mapping[str, str | None]) -> tuple[str, str] | None:
    """``(label, display)`` of a structure after the map, or None when it is left out.

    The label is the id form (``hepatic_tissue``), the display the name as given
    (``Hepatic tissue``) with underscores as spaces.
    """
    key = name if name in table else next((k for k in table if slug(k) == slug(name)), None)
    target = table[key] if key is not None else name
    if target is None or not slug(target):
        return None
    return slug(target), target.strip().replace("_", " ")
