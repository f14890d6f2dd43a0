"""One target a generator cannot describe never stops a build: it is rejected at ``generation``
with its reason, every other target goes on, and the counts add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset
from medground_hf.generation.base import Generated, GenerationError, Generator
from medground_hf.generation.pipeline import labels_of, run
from PIL import Image

from medground_hf.build import build
from medground_hf.folder import read_manifest


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rows(out: Path, config: str) -> list[dict]:
    if not (out / config).is_dir():
        return []
    ds = load_dataset(str(out), config)
    return [r for split in ds for r in ds[split].remove_columns("image")]


def _row_of_equal_spots(root: Path) -> None:
    """One image with seven equal spots in a row, 9 px apart on a 256 px frame (3.5 % of the
    width: no spot is clearly leftmost, none is larger, all are central), and one image with a
    lone spot that a viewer can point at."""
    yy, xx = np.mgrid[:256, :256]
    rng = np.random.default_rng(0)
    for stem, centres in (("row", [(128, 101 + 9 * i) for i in range(7)]), ("lone", [(70, 80)])):
        image = rng.normal(90, 6, (256, 256)).clip(0, 255).astype(np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        for cy, cx in centres:
            spot = (yy - cy) ** 2 + (xx - cx) ** 2 <= 3**2
            image[spot] = 220
            mask[spot] = 255
        _save(root / "images" / f"{stem}.png", image)
        _save(root / "masks" / f"{stem}.png", mask)


def test_many_equal_components_are_rejected_and_the_build_finishes(tmp_path):
    _row_of_equal_spots(tmp_path)
    out = tmp_path / "out"
    manifest = build(
        "image_mask_folder",
        tmp_path,
        out,
        options={"label": "nodule", "min_size": 9, "modality": "CT", "body_part": "lung"},
    )
    v = manifest["verification"]
    assert v["targets_total"] == 8 == v["targets_kept"] + v["targets_rejected"]
    assert v["queries_generated"] == v["queries_kept"] + v["queries_rejected"]
    kept = {r["id"] for r in _rows(out, "grounding")}
    rejected = {r["id"]: r for r in _rows(out, "rejected") if not r["queries"]}
    assert kept == {"image_mask_folder/lone/nodule/0"}
    assert set(rejected) == {f"image_mask_folder/row/nodule/{i}" for i in range(7)}
    for row in rejected.values():
        assert row["rejected_stage"] == "generation"
        assert "single" in row["rejected_reason"] and "out" in row["rejected_reason"], row
    assert any(r["stage"] == "generation" for r in read_manifest(out)["verification"]["reasons"])


class Flaky(Generator):
    """Answers every target but one: for ``bad`` it raises (``mode="raise"``), puts the
    exception in its slot (``"slot"``) or stops the run (``"systemic"``)."""

    name = "flaky"
    prompt_version = "flaky-v1"

    def __init__(self, bad: str, mode: str):
        super().__init__()
        self.bad, self.mode, self.calls = bad, mode, 0

    def generate(self, targets):
        self.calls += 1
        out: list = []
        for t in targets:
            if t.record["id"] != self.bad:
                out.append(
                    Generated([{"text": "the polyp seen in the image", "style": "clinical"}])
                )
            elif self.mode == "slot":
                out.append(RuntimeError("server said: 400 image too large"))
            elif self.mode == "systemic":
                raise GenerationError("server unreachable after 5 retries")
            else:
                raise RuntimeError("server said: 400 image too large")
        return out


@pytest.mark.parametrize("mode", ["raise", "slot"])
def test_a_generator_failing_on_one_target_rejects_only_that_target(built_kvasir, mode):
    splits = dict(load_dataset(str(built_kvasir), "grounding"))
    labels = labels_of(read_manifest(built_kvasir)["sources"])
    lone = next(
        r["id"]
        for ds in splits.values()
        for r in ds.remove_columns("image")
        if r["num_candidates"] == 1
    )
    flaky = Flaky(lone, mode)
    outcome = run(splits, labels, flaky)
    v = outcome.verification
    assert v["targets_total"] == 50 == v["targets_kept"] + v["targets_rejected"]
    failed = [
        r
        for ds in outcome.rejected.values()
        for r in ds.remove_columns("image")
        if r["rejected_stage"] == "generation"
    ]
    assert [r["id"] for r in failed] == [lone]
    assert failed[0]["rejected_reason"] == "RuntimeError: server said: 400 image too large"
    reason = "RuntimeError: server said: # image too large"  # numbers masked in the stats
    assert {"stage": "generation", "reason": reason, "count": 1} in v["reasons"]
    if mode == "raise":  # the failing batch was retried one target at a time
        assert flaky.calls > len(splits)


def test_a_systemic_generator_failure_stops_the_run(built_kvasir):
    splits = dict(load_dataset(str(built_kvasir), "grounding"))
    labels = labels_of(read_manifest(built_kvasir)["sources"])
    first = next(r["id"] for r in splits["train"].remove_columns("image"))
    with pytest.raises(GenerationError, match="unreachable"):
        run(splits, labels, Flaky(first, "systemic"))
