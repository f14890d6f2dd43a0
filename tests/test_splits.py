"""Group-aware, deterministic splits."""

from __future__ import annotations

from collections import Counter

import pytest

from medground_hf.splits import assign_split, group_fraction, parse_ratios


def test_same_group_same_split_every_time():
    assert {assign_split("patient-17") for _ in range(5)} == {assign_split("patient-17")}
    assert group_fraction("a") != group_fraction("b")


def test_ratios_are_respected_on_many_groups():
    counts = Counter(assign_split(f"case-{i}") for i in range(20000))
    assert counts["train"] / 20000 == pytest.approx(0.8, abs=0.015)
    assert counts["validation"] / 20000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 20000 == pytest.approx(0.1, abs=0.01)


def test_adding_groups_never_moves_old_ones():
    old = {f"g{i}": assign_split(f"g{i}") for i in range(500)}
    for i in range(500, 1000):
        assign_split(f"g{i}")
    assert all(assign_split(g) == s for g, s in old.items())


def test_source_split_wins():
    assert assign_split("x", source_split="test") == "test"


def test_custom_ratios():
    ratios = parse_ratios("train=0.5,test=0.5")
    counts = Counter(assign_split(f"c{i}", ratios) for i in range(4000))
    assert set(counts) == {"train", "test"}
    assert counts["train"] / 4000 == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("text", ["train=0.8,test=0.1", "train=1.2,test=-0.2", "train", "=0.5"])
def test_bad_ratios_are_refused(text):
    with pytest.raises(ValueError):
        parse_ratios(text)
