"""``medground eval``: score a predictions file against a built dataset folder.

predictions (JSONL) -> answers parsed to canonical pixels -> IoU against the ``grounding``
targets (by id) -> metrics overall and per group -> JSON + Markdown report and per-item JSONL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import boxes
from ..errors import InputError
from . import MIN_COVERAGE, metrics
from .answers import ParseFailure, convention_for, parse_answer, relative_suspected, to_canonical
from .report import write_reports
from .targets import Prediction, Targets, load_targets, read_predictions

MAX_UNKNOWN_SHOWN = 5


@dataclass
class Scored:
    """Per-item results, aligned: one row per answer, then one per target left unanswered."""

    rows: list[int] = field(default_factory=list)  # index into the evaluated targets
    boxes: list[list[float]] = field(default_factory=list)  # NaN row when no box
    status: list[str] = field(default_factory=list)
    detail: list[dict] = field(default_factory=list)

    def add(self, row: int, box: list[float] | None, status: str, **detail) -> None:
        self.rows.append(row)
        self.boxes.append(box if box is not None else [np.nan] * 4)
        self.status.append(status)
        self.detail.append(detail)


def score_prediction(
    pred: Prediction,
    convention: str,
    width: int,
    height: int,
    resize: boxes.SmartResize = boxes.QWEN25_RESIZE,
) -> dict:
    """Parse one answer: ``box`` (canonical pixels) or ``reason``, plus the form it was in."""
    try:
        if pred.output is not None:
            parsed = parse_answer(pred.output, convention, width, height, resize)
            return {
                "box": parsed.box,
                "form": parsed.form,
                "out_of_range": parsed.out_of_range,
                "relative_suspected": parsed.relative_suspected,
            }
        if not isinstance(pred.bbox_xyxy, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in pred.bbox_xyxy
        ):
            raise ParseFailure(f"bbox_xyxy is not a list of numbers: {pred.bbox_xyxy!r}")
        box, out_of_range = to_canonical(pred.bbox_xyxy, "real", width, height)
        return {
            "box": box,
            "form": "bbox_xyxy",
            "out_of_range": out_of_range,
            "relative_suspected": relative_suspected(pred.bbox_xyxy, "real"),
        }
    except ParseFailure as exc:
        return {"box": None, "form": None, "reason": str(exc)}


def evaluate(
    dataset: str | Path,
    config: str,
    predictions: str | Path,
    *,
    split: str | None = None,
    box_format: str | None = None,
    report_dir: str | Path | None = None,
    resize: boxes.SmartResize | None = None,
    min_coverage: float = MIN_COVERAGE,
    strict: bool = False,
) -> dict:
    """Score ``predictions`` on ``dataset`` (optionally one split); write and return the report.

    ``resize`` is the Qwen2.5-VL resize rule of the model's training (``qwen25`` answers only;
    default: the released processor's min/max pixels). Predictions answering fewer than
    ``min_coverage`` of the targets still score (missing ones count as IoU 0) but get a warning
    in the report (``warnings``; the CLI prints it), since a near-zero score then says more
    about the file (another split, an unfinished run) than about the model; ``strict`` makes
    that an error instead."""
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min coverage must be between 0 and 1, got {min_coverage}")
    predictions = Path(predictions)
    convention = convention_for(config, box_format)
    if resize is not None and convention != "qwen25":
        raise ValueError(f"min/max pixels only apply to qwen25 answers, not {convention}")
    resize = resize or boxes.QWEN25_RESIZE
    everything = load_targets(dataset)
    in_split = np.ones(len(everything), bool)
    if split is not None:
        in_split = everything.groups["split"] == split
        if not in_split.any():
            splits = sorted(set(everything.groups["split"]))
            raise ValueError(f"{dataset}: no targets in split {split!r} (splits: {splits})")
    targets = everything.select(in_split)
    known = everything.index()
    index = targets.index()
    scored = Scored()
    unknown: list[str] = []  # the first few, for the error message
    seen: Counter[str] = Counter()
    lines = other_split = unknown_count = 0
    for pred in read_predictions(predictions):
        lines += 1
        if pred.id not in known:
            unknown_count += 1
            if len(unknown) < MAX_UNKNOWN_SHOWN:
                unknown.append(f"line {pred.line}: {pred.id!r}")
            continue
        if pred.id not in index:
            other_split += 1
            continue
        row = index[pred.id]
        seen[pred.id] += 1
        result = score_prediction(
            pred, convention, int(targets.width[row]), int(targets.height[row]), resize
        )
        status = metrics.OK if result["box"] is not None else metrics.PARSE_FAILURE
        scored.add(row, result.pop("box"), status, line=pred.line, **result)
    if unknown_count:
        raise InputError(
            predictions,
            f"{unknown_count} prediction ids are not in {dataset}'s grounding config "
            f"({'; '.join(unknown)})",
        )
    coverage = len(seen) / len(targets)
    warnings = []
    if coverage < min_coverage:
        problem = (
            f"predictions answer {len(seen)} of {len(targets)} targets"
            f"{f' of split {split}' if split else ''} ({coverage:.1%}), under the minimum "
            f"{min_coverage:.0%}; the missing ones score IoU 0"
            + (f" ({other_split} lines are for other splits)" if other_split else "")
        )
        if strict:
            raise InputError(predictions, problem)
        warnings.append(problem)
    for row, target_id in enumerate(targets.ids):
        if target_id not in seen:
            scored.add(row, None, metrics.MISSING)
    report, ious, mirror_ious = score(targets, scored)
    report.update(
        dataset=str(dataset),
        config=config,
        box_format=convention,
        qwen25_resize=(
            {"min_pixels": resize.min_pixels, "max_pixels": resize.max_pixels}
            if convention == "qwen25"
            else None
        ),
        split=split,
        predictions=str(predictions),
        warnings=warnings,
    )
    report["counts"].update(
        prediction_lines=lines,
        duplicate_ids=sum(1 for c in seen.values() if c > 1),
        other_split=other_split,
        answered=len(seen),
        coverage=round(coverage, 6),
    )
    report_dir = (
        Path(report_dir) if report_dir else predictions.with_name(predictions.stem + "-eval")
    )
    write_reports(report, per_item(targets, scored, ious, mirror_ious), report_dir)
    report["report_dir"] = str(report_dir)
    return report


def score(targets: Targets, scored: Scored) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics overall, per group and on the multi-candidate subset; also the per-item IoUs
    against the target and against its mirror image."""
    rows = np.asarray(scored.rows, dtype=np.int64)
    pred = np.asarray(scored.boxes, dtype=np.float64).reshape(-1, 4)
    status = np.asarray(scored.status, dtype=object)
    gt = targets.boxes[rows]
    ious = metrics.iou(pred, gt)
    mirror_ious = metrics.iou(pred, metrics.mirror_x(gt, targets.width[rows]))
    candidates = np.where(targets.num_candidates[rows] > 1, "multi", "single")
    forms = Counter(d.get("form") for d in scored.detail if d.get("form"))
    reasons = Counter(d["reason"].split(":")[0] for d in scored.detail if d.get("reason"))
    report = {
        "counts": {
            "targets": len(targets),
            "scored": len(rows),
            "out_of_range": sum(1 for d in scored.detail if d.get("out_of_range")),
            "relative_suspected": sum(1 for d in scored.detail if d.get("relative_suspected")),
        },
        "overall": metrics.summarize(ious, mirror_ious, status),
        **{
            f"by_{name}": metrics.breakdown(targets.groups[name][rows], ious, mirror_ious, status)
            for name in ("source", "modality", "label", "split")
        },
        "by_candidates": metrics.breakdown(candidates, ious, mirror_ious, status),
        "answer_forms": dict(sorted(forms.items())),
        "failure_reasons": dict(reasons.most_common()),
    }
    return report, ious, mirror_ious


def per_item(
    targets: Targets, scored: Scored, ious: np.ndarray, mirror_ious: np.ndarray
) -> Iterator[dict]:
    """One JSON-able record per scored item, for the ``items.jsonl`` of the report."""
    for k, row in enumerate(scored.rows):
        box = scored.boxes[k]
        yield {
            "id": str(targets.ids[row]),
            **{name: targets.groups[name][row] for name in ("split", "source", "label")},
            "status": scored.status[k],
            "iou": round(float(ious[k]), 6),
            "mirror_iou": round(float(mirror_ious[k]), 6),
            "pred_bbox_xyxy": None if np.isnan(box).any() else [int(v) for v in box],
            "bbox_xyxy": [int(v) for v in targets.boxes[row]],
            **scored.detail[k],
        }
