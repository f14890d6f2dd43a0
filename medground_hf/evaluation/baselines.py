"""Reference predictions that bracket a model's score: whole image, centre prior, oracle.

- ``whole-image``: the box ``[0, 0, width, height]``: what "I can't tell" scores.
- ``center-prior``: the mean normalised target box of the prior split (``train``), scaled to
  each image: what knowing only where targets usually are scores.
- ``oracle``: the ground-truth box itself (1.0 by construction; checks the scoring path).

Output is a predictions JSONL in canonical pixels that ``medground eval`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import boxes
from . import KINDS
from .targets import Targets, load_targets


def center_prior(targets: Targets) -> list[float]:
    """Mean of the targets' boxes in normalised (0-1) coordinates."""
    if not len(targets):
        raise ValueError("no targets to compute a centre prior from")
    scale = np.stack([targets.width, targets.height, targets.width, targets.height], axis=1)
    return (targets.boxes / scale).mean(axis=0).tolist()


def baseline_boxes(everything: Targets, kind: str, prior_split: str = "train") -> np.ndarray:
    """Canonical ``(N, 4)`` boxes of baseline ``kind`` for every target of ``everything``."""
    if kind == "oracle":
        return everything.boxes.astype(np.int64)
    if kind == "whole-image":
        zeros = np.zeros(len(everything), np.int64)
        return np.stack([zeros, zeros, everything.width, everything.height], axis=1)
    if kind == "center-prior":
        prior_rows = everything.groups["split"] == prior_split
        if not prior_rows.any():
            raise ValueError(f"no targets in split {prior_split!r} to compute the centre prior")
        prior = center_prior(everything.select(prior_rows))
        return np.array(
            [
                boxes.from_norm(prior, int(w), int(h))
                for w, h in zip(everything.width, everything.height, strict=True)
            ],
            dtype=np.int64,
        ).reshape(-1, 4)
    raise ValueError(f"unknown baseline {kind!r}; choose from {KINDS}")


def write_baseline(
    dataset: str | Path,
    kind: str,
    out: str | Path,
    *,
    split: str | None = None,
    prior_split: str = "train",
) -> int:
    """Write the baseline's predictions (one line per target, optionally one split); the count."""
    everything = load_targets(dataset)
    predicted = baseline_boxes(everything, kind, prior_split)
    rows = np.flatnonzero(
        everything.groups["split"] == split if split else np.ones(len(everything), bool)
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            line = {"id": str(everything.ids[row]), "bbox_xyxy": predicted[row].tolist()}
            fh.write(json.dumps(line) + "\n")
    return len(rows)
