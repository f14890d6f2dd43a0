"""Structures that may overlap (DICOM segments, RT ROIs) in one integer label map.

A label map holds one value per voxel, but segments of a DICOM-SEG and ROIs of an RT structure
set overlap as a rule (a tumour inside an organ, a GTV inside a PTV). Each value of the map
stands for the *set* of structures covering the voxel, so one structure is the union of every
value whose set holds it. The map then goes through the same slice selection and rendering as a
NIfTI label map (a :class:`~medground_hf.volumes.Target` is a structure and its values), and it
costs one small integer per voxel however many structures there are.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np


class OverlapLabels:
    """A label map painted structure by structure, slice by slice."""

    def __init__(self, shape: tuple[int, ...]):
        self.labels = np.zeros(shape, dtype=np.uint16)
        self.sets: list[frozenset[str]] = [frozenset()]
        self._codes: dict[frozenset[str], int] = {frozenset(): 0}

    def _code(self, names: frozenset[str]) -> int:
        code = self._codes.get(names)
        if code is None:
            code = len(self.sets)
            if code > np.iinfo(self.labels.dtype).max:  # a new set past the type: widen once
                self.labels = self.labels.astype(np.uint32)
            self.sets.append(names)
            self._codes[names] = code
        return code

    def paint(self, name: str, where: tuple, mask: np.ndarray) -> None:
        """Add ``name`` to the voxels of ``self.labels[where]`` where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        old = self.labels[where][mask]
        if (old == old[0]).all():  # the usual case: the structure covers one set (e.g. none)
            self.labels[where][mask] = self._code(self.sets[int(old[0])] | {name})
            return
        values, inverse = np.unique(old, return_inverse=True)
        new = np.array([self._code(self.sets[int(v)] | {name}) for v in values])
        self.labels[where][mask] = new.astype(self.labels.dtype)[inverse]

    def values(self, names: Collection[str]) -> tuple[int, ...]:
        """Every label value whose set holds one of ``names``: together, their union."""
        wanted = set(names)
        return tuple(code for code, held in enumerate(self.sets) if held & wanted)

    def names(self) -> set[str]:
        """The structures painted so far (with at least one voxel)."""
        return set().union(*self.sets)
