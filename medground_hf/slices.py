"""Which slices of a volume become images: a small, documented, deterministic policy.

For each target structure (a label, or a union such as "whole tumour") the per-slice area along
the slicing axis is measured. Selected are:

1. each structure's **largest slice** (its best view), biggest structures first. When that slice
   is within ``min_gap`` of one already chosen, the chosen one stands in for it if it shows the
   structure with at least half its largest area; otherwise the structure's largest slice that
   keeps the gap is taken, so every structure is shown;
2. with ``every_k > 0``, also every ``k``-th slice counted from that largest slice
   (``largest ± k, ± 2k, ...``) where the structure covers at least ``min_area_px`` pixels,
   larger areas first.

Two selected slices are never closer than ``min_gap`` slices (``min_gap=1`` allows neighbours;
the default keeps near-duplicate neighbours out). ``max_slices`` caps a case, keeping the order
above (largest slices win). The result is sorted by index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Largest label value counted with a per-slice histogram directly (see area_profiles).
MAX_HISTOGRAM = 2**16


@dataclass(frozen=True)
class SlicePolicy:
    """Parameters of :func:`select_slices` (see the module docstring)."""

    every_k: int = 0
    min_area_px: int = 64
    min_gap: int = 3
    max_slices: int | None = None

    def __post_init__(self):
        if self.every_k < 0:
            raise ValueError(f"every_k must be >= 0, got {self.every_k}")
        if self.min_gap < 1:
            raise ValueError(f"min_gap must be >= 1 (1 allows neighbours), got {self.min_gap}")
        if self.max_slices is not None and self.max_slices < 1:
            raise ValueError(f"max_slices must be >= 1 or None, got {self.max_slices}")


def area_profiles(
    labels: np.ndarray, structures: Mapping[str, Sequence[int]], axis: int
) -> dict[str, np.ndarray]:
    """Per structure (a set of label values), its voxel count in every slice along ``axis``.

    ``labels`` holds non-negative integers; one histogram per slice serves every structure.
    Label values too large for a histogram (instance ids, ``2**20``) are first renumbered
    densely over the structures' values, so memory follows the number of labels, not their size.
    """
    size = int(labels.max(initial=0)) + 1
    declared = np.unique([v for values in structures.values() for v in values])
    if size > MAX_HISTOGRAM and declared.size:
        where = np.minimum(np.searchsorted(declared, labels), declared.size - 1)
        labels = np.where(declared[where] == labels, where + 1, 0)
        structures = {
            name: [int(np.searchsorted(declared, v)) + 1 for v in values]
            for name, values in structures.items()
        }
        size = declared.size + 1
    moved = np.moveaxis(labels, axis, 0)
    counts = np.stack([np.bincount(plane.ravel(), minlength=size) for plane in moved])
    return {
        name: counts[:, [v for v in values if 0 <= v < size]].sum(axis=1)
        for name, values in structures.items()
    }


def select_slices(profiles: Mapping[str, np.ndarray], policy: SlicePolicy) -> list[int]:
    """Slice indices chosen by ``policy`` from per-structure area profiles."""
    present = [p for p in profiles.values() if p.max(initial=0) > 0]
    present.sort(key=lambda p: (-int(p.max()), int(np.argmax(p))))
    chosen: list[int] = []

    def full() -> bool:
        return policy.max_slices is not None and len(chosen) >= policy.max_slices

    def fits(index: int) -> bool:
        return all(abs(index - other) >= policy.min_gap for other in chosen)

    for p in present:
        if full():
            break
        best = int(np.argmax(p))
        if fits(best):
            chosen.append(best)
        elif not any(2 * p[j] >= p[best] for j in chosen if abs(j - best) < policy.min_gap):
            allowed = [i for i in np.flatnonzero(p) if fits(int(i))]
            if allowed:
                chosen.append(int(max(allowed, key=lambda i: (p[i], -i))))
    extras: list[tuple[int, int]] = []
    if policy.every_k:
        for p in present:
            start = int(np.argmax(p)) % policy.every_k
            extras.extend(
                (int(p[i]), i)
                for i in range(start, p.size, policy.every_k)
                if p[i] >= policy.min_area_px
            )
        extras.sort(key=lambda t: (-t[0], t[1]))
    for _, index in extras:
        if full():
            break
        if fits(index):
            chosen.append(index)
    return sorted(chosen)
