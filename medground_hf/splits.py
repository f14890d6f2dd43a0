"""Deterministic, group-aware splits.

A group (patient, case or volume) is placed by hashing its id, never by shuffling a list: the same
group lands in the same split on every re-run and in every later version, adding groups never moves
old ones, and no group can straddle two splits. A source's own split wins where it has one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_ORDER = ("train", "validation", "test")


def split_key(split: str) -> tuple[int, str]:
    """Sort key of split names: train, validation, test, then the others by name."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def parse_ratios(text: str) -> dict[str, float]:
    """Parse ``"train=0.8,validation=0.1,test=0.1"``; ratios must be positive and sum to 1."""
    ratios: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not name.strip() or not value.strip():
            raise ValueError(f"split ratios: expected name=fraction, got {part!r}")
        ratios[name.strip()] = float(value)
    validate_ratios(ratios)
    return ratios


def validate_ratios(ratios: Mapping[str, float]) -> None:
    if not ratios or any(v <= 0 for v in ratios.values()):
        raise ValueError(f"split ratios must be positive: {dict(ratios)}")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must sum to 1, got {sum(ratios.values()):.4f}")


def group_fraction(group_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) that depends only on the group id (and an optional salt)."""
    digest = hashlib.sha256(f"{salt}{group_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(
    group_id: str,
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    *,
    source_split: str | None = None,
    salt: str = "",
) -> str:
    """The split of one group: the source's own if given, else by hash against cumulative ratios."""
    if source_split:
        return source_split
    position = group_fraction(group_id, salt)
    cumulative = 0.0
    names = list(ratios)
    for name in names:
        cumulative += ratios[name]
        if position < cumulative:
            return name
    return names[-1]
