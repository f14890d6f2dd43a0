"""Which derived configs and export formats exist, and which of them a build writes.

Kept apart from the writers so that the command line can list and check them (``--configs``,
``--format``) without importing Arrow or ``datasets``.
"""

from __future__ import annotations

from .chat import DIALECTS

COCO = "coco"
# What a build writes unless told otherwise: ``coco`` (one more copy of each image). Each chat
# dialect is one more copy again, so they are chosen with ``--configs`` or exported as files.
DEFAULT_DERIVED = (COCO,)
# What ``medground export`` writes as files.
FORMATS = (COCO, *DIALECTS)


def derived_configs() -> list[str]:
    return [COCO, *(d.config for d in DIALECTS.values())]


def check_selection(configs: list[str]) -> list[str]:
    """The chosen derived configs in canonical order (``all`` for every one); unknown names
    are an error."""
    known = derived_configs()
    if "all" in configs:
        return known
    unknown = sorted(set(configs) - set(known))
    if unknown:
        raise ValueError(
            f"unknown derived config(s) {unknown}; choose from all, {', '.join(known)}"
        )
    return [c for c in known if c in configs]


def selected_configs(manifest: dict) -> list[str]:
    """What the build asked for (``derived_configs`` in the manifest), else the default."""
    chosen = manifest.get("derived_configs")
    return list(DEFAULT_DERIVED) if chosen is None else check_selection(chosen)
