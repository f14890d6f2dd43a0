"""Evaluation reports: ``report.json`` (everything), ``report.md`` (tables), ``items.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .metrics import THRESHOLDS

GROUPS = (
    ("by_source", "Per source"),
    ("by_modality", "Per modality"),
    ("by_label", "Per label"),
    ("by_split", "Per split"),
    ("by_candidates", "Single vs. multi-candidate images (num_candidates > 1)"),
)
COLUMNS = (
    ("n", "n", "{}"),
    *((f"acc@{t}", f"Acc@{t}", "{:.3f}") for t in THRESHOLDS),
    ("miou", "mIoU", "{:.3f}"),
    ("parse_failure_rate", "parse fail", "{:.3f}"),
    ("missing", "missing", "{}"),
    ("mirror_error_rate", "mirror err", "{:.3f}"),
)


def _table(rows: dict[str, dict], first: str) -> list[str]:
    head = [first, *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, summary in rows.items():
        cells = [f"`{name}`", *(fmt.format(summary[key]) for key, _, fmt in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict) -> str:
    """The report as Markdown: what was scored, then one metrics table per breakdown."""
    counts = report["counts"]
    lines = [
        "# Grounding evaluation",
        "",
        f"- dataset: `{report['dataset']}`, split: `{report['split'] or 'all'}`",
        f"- predictions: `{report['predictions']}` ({counts['prediction_lines']} lines)",
        f"- config: `{report['config']}`, answers read as `{report['box_format']}` boxes",
        f"- targets: {counts['targets']}, scored items: {counts['scored']}, "
        f"missing: {report['overall']['missing']}, "
        f"parse failures: {report['overall']['parse_failures']}, "
        f"duplicate ids: {counts['duplicate_ids']}, other-split lines ignored: "
        f"{counts['other_split']}, boxes clipped to the convention's range: "
        f"{counts['out_of_range']}, pixel answers that look like 0-1 fractions: "
        f"{counts['relative_suspected']}",
        "",
        *(f"**Warning:** {w}.\n" for w in report.get("warnings", [])),
        "Missing and unparsable answers score IoU 0. Parse-failure rate is over answers received; "
        "the mirror-error rate counts predictions that hit the left-right mirrored target "
        "(IoU >= 0.5) while missing the true one.",
        "",
        "## Overall",
        "",
        *_table({"all": report["overall"]}, "subset"),
    ]
    for key, title in GROUPS:
        lines += ["", f"## {title}", "", *_table(report[key], key.removeprefix("by_"))]
    if report["answer_forms"]:
        forms = ", ".join(f"{k} {v}" for k, v in report["answer_forms"].items())
        lines += ["", f"Answer forms found: {forms}."]
    if report["failure_reasons"]:
        reasons = ", ".join(f"{k} ({v})" for k, v in report["failure_reasons"].items())
        lines += ["", f"Parse failures: {reasons}."]
    return "\n".join(lines) + "\n"


def write_reports(report: dict, items: Iterable[dict], folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    (folder / "report.md").write_text(markdown(report), "utf-8")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item) + "\n")
