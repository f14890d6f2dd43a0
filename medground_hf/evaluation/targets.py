"""The two inputs of an evaluation: ground-truth targets of a built folder, and predictions.

Targets come from the folder's ``grounding`` config, read column-wise from its Parquet shards
without the image bytes. Predictions are JSONL, one line per answer, streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

GROUP_COLUMNS = ("split", "source", "modality", "label")
COLUMNS = ("id", *GROUP_COLUMNS, "width", "height", "bbox_xyxy", "num_candidates")


@dataclass
class Targets:
    """Ground truth, one entry per target, as arrays (boxes ``(N, 4)`` canonical pixels)."""

    ids: np.ndarray
    groups: dict[str, np.ndarray]
    width: np.ndarray
    height: np.ndarray
    boxes: np.ndarray
    num_candidates: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def index(self) -> dict[str, int]:
        return {str(i): n for n, i in enumerate(self.ids)}

    def select(self, mask: np.ndarray) -> Targets:
        return Targets(
            ids=self.ids[mask],
            groups={k: v[mask] for k, v in self.groups.items()},
            width=self.width[mask],
            height=self.height[mask],
            boxes=self.boxes[mask],
            num_candidates=self.num_candidates[mask],
        )


def load_targets(dataset: str | Path) -> Targets:
    """Every target of the ``grounding`` config of a built folder, all splits."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..folder import DEFAULT_CONFIG, config_splits
    from ..integrity import check_folder

    dataset = Path(dataset)
    check_folder(dataset)  # a clear error when this is not a built folder, or a damaged one
    if DEFAULT_CONFIG not in config_splits(dataset):
        raise FileNotFoundError(f"{dataset}: no {DEFAULT_CONFIG}/ Parquet shards to evaluate on")
    shards = sorted((dataset / DEFAULT_CONFIG).glob("*.parquet"))
    table = pa.concat_tables(pq.read_table(path, columns=list(COLUMNS)) for path in shards)
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    if len(set(ids)) != len(ids):
        raise InputError(dataset / DEFAULT_CONFIG, "record ids are not unique")
    boxes = np.asarray(table.column("bbox_xyxy").to_pylist(), dtype=np.float64).reshape(-1, 4)
    return Targets(
        ids=ids,
        groups={c: np.asarray(table.column(c).to_pylist(), dtype=object) for c in GROUP_COLUMNS},
        width=table.column("width").to_numpy().astype(np.int64),
        height=table.column("height").to_numpy().astype(np.int64),
        boxes=boxes,
        num_candidates=table.column("num_candidates").to_numpy().astype(np.int64),
    )


@dataclass(frozen=True)
class Prediction:
    """One line of a predictions file: raw model text or a canonical pixel box."""

    line: int
    id: str
    output: str | None = None
    bbox_xyxy: object = None


def read_predictions(path: str | Path) -> Iterator[Prediction]:
    """Stream a predictions JSONL; structural problems are errors naming the file and line.

    Each line is ``{"id": ..., "output": "<raw text>"}`` or ``{"id": ..., "bbox_xyxy": [...]}``;
    a ``bbox_xyxy`` of ``null`` or of the wrong shape is the model's failure, scored later, not a
    file error.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "predictions file not found")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise InputError(path, f"line {number}: expected an object with a string 'id'")
            has_output, has_box = "output" in row, "bbox_xyxy" in row
            if has_output == has_box:
                raise InputError(
                    path, f"line {number}: needs exactly one of 'output' and 'bbox_xyxy'"
                )
            if has_output and not isinstance(row["output"], str | None):
                raise InputError(path, f"line {number}: 'output' must be a string")
            output = (row["output"] or "") if has_output else None  # null: an empty answer
            yield Prediction(number, row["id"], output, row.get("bbox_xyxy"))
