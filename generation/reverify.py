"""``medground verify``: check queries written outside the generator against a built folder.

A team's own LLM pipeline, annotators, or an older release to re-check after the lexicons grew:
each line of a JSONL file names a target by its record id and gives a query text. Every query
goes through the same verifier as a generated one (built per source as the pipeline builds it,
with the target's siblings for disambiguation, optionally the online VLM judge), and every input
line gets one output line, in order, with its verdicts. Lines that cannot be checked (not JSON,
no id or text, an id the folder does not hold) get a verdict of stage ``input`` naming the line.

The folder is streamed twice, reading only what the query file needs: first the ids, image ids
and relations of every row (which images are needed; the structure names "next to the ..." may
use), then the full records of the needed images (images' bytes only with a judge).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medground_hf.folder import config_splits, iter_rows
from medground_hf.integrity import check_folder
from medground_hf.record import GROUNDING_FEATURES

from .base import Judge, Target
from .pipeline import (
    Siblings,
    _passed_offline,
    labels_of,
    structure_terms,
    verifier_terms,
)
from .verify import STAGES, STYLES, Verdict, Verifier, first_failure

SHARD_CONFIGS = ("grounding", "rejected")  # every target of a folder is in one of them
DEFAULT_STYLE = "location"  # the format check wants a style; a line may give its own
CHUNK = 512  # lines verified (and sent to the judge) together
_INDEX_COLUMNS = ["id", "image_id", "relations"]


@dataclass
class Line:
    """One input line: what it asks, or why it cannot be checked."""

    number: int
    id: str | None = None
    text: str | None = None
    style: str = DEFAULT_STYLE
    problem: tuple[str, str] | None = None  # (check, reason) of stage "input"


def parse_line(number: int, raw: str | Mapping) -> Line:
    """A JSONL line (or an already parsed object) as a :class:`Line`; extra keys are ignored."""
    if isinstance(raw, str):
        if not raw.strip():
            return Line(number, problem=("malformed", f"line {number}: empty line"))
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            return Line(number, problem=("malformed", f"line {number}: not JSON: {exc.msg}"))
    else:
        data = raw
    if not isinstance(data, Mapping):
        what = type(data).__name__
        return Line(number, problem=("malformed", f"line {number}: a {what}, not an object"))
    rid, text, style = data.get("id"), data.get("text"), data.get("style", DEFAULT_STYLE)
    line = Line(
        number, rid if isinstance(rid, str) else None, text if isinstance(text, str) else None
    )
    missing = [key for key, value in (("id", line.id), ("text", line.text)) if not value]
    if missing:
        keys = " and ".join(f"'{k}'" for k in missing)
        line.problem = ("malformed", f"line {number}: {keys} missing or not a non-empty string")
    elif style not in STYLES:
        line.problem = ("malformed", f"line {number}: 'style' must be one of {STYLES}")
    else:
        line.style = style
    return line


def read_lines(path: Path) -> Iterator[Line]:
    """The lines of a query file, numbered from 1 (the file is read as it is consumed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            for number, raw in enumerate(fh, start=1):
                yield parse_line(number, raw.rstrip("\n"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: query file does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except IsADirectoryError as exc:
        raise ValueError(f"{path}: is a folder, expected a JSONL query file") from exc


@dataclass
class Index:
    """What the queries need from the folder: their targets, the siblings of their images and
    a verifier per source, built as the pipeline builds it."""

    records: dict[str, dict]
    siblings: Siblings
    verifiers: dict[str, Verifier]
    structures: dict[str, dict[str, str]]
    labels: dict

    @classmethod
    def load(cls, folder: Path, ids: set[str], *, images: bool) -> Index:
        manifest = check_folder(folder, configs=SHARD_CONFIGS)  # shards as the manifest says
        present = config_splits(folder)
        configs = [c for c in SHARD_CONFIGS if c in present]
        if not configs:
            raise FileNotFoundError(f"{folder}: no grounding or rejected shards to verify against")
        try:
            labels = labels_of(manifest["sources"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{folder}: manifest has no usable 'sources' entry: {exc}") from exc
        siblings = Siblings()
        wanted_images: set[str] = set()
        for config in configs:
            for row in iter_rows(folder, config, columns=_INDEX_COLUMNS):
                for kind in ("inside", "adjacent_to", "contains"):
                    siblings.structure_names.update(row["relations"][kind])
                if row["id"] in ids:
                    wanted_images.add(row["image_id"])
        columns = [c for c in GROUNDING_FEATURES if c != "image" or images]
        records: dict[str, dict] = {}
        seen: set[str] = set()
        for config in configs:
            for row in iter_rows(
                folder, config, columns=columns, where=("image_id", wanted_images)
            ):
                if row["id"] in seen:  # a target's grounding row and its rejected query rows
                    continue
                seen.add(row["id"])
                row.pop("queries")
                if row["num_targets_in_image"] > 1:
                    siblings.by_image[row["image_id"]].append(row)
                if row["id"] in ids:
                    records[row["id"]] = row
        names = siblings.structure_names
        # images are read only for a judge, which then also confirms appearance words
        verifiers = {
            s: Verifier(specs, verifier_terms(specs, names), judge=images)
            for s, specs in labels.items()
        }
        return cls(
            records,
            siblings,
            verifiers,
            {s: structure_terms(specs, names) for s, specs in labels.items()},
            labels,
        )

    def spec(self, record: Mapping):
        return self.labels.get(record["source"], {}).get(record["label"])


@dataclass
class Summary:
    """Counts per check and per source, and every line that could not be checked."""

    lines: int = 0
    kept: int = 0
    checks: Counter = field(default_factory=Counter)  # (stage, check, passed) -> n
    rejected_by: Counter = field(default_factory=Counter)  # "stage/check" of the first failure
    sources: dict[str, Counter] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)

    def add(self, line: Line, result: dict, source: str | None) -> None:
        self.lines += 1
        if line.problem is not None:
            check, reason = line.problem
            self.problems.append(
                {"line": line.number, "id": line.id, "check": check, "reason": reason}
            )
            return
        self.kept += result["kept"]
        for v in result["verdicts"]:
            self.checks[(v["stage"], v["check"], v["passed"])] += 1
        counts = self.sources.setdefault(source, Counter())
        counts["queries"] += 1
        counts["kept" if result["kept"] else "rejected"] += 1
        failure = first_failure(result["verdicts"])
        if failure is not None:
            self.rejected_by[f"{failure['stage']}/{failure['check']}"] += 1
            counts[f"rejected by {failure['stage']}/{failure['check']}"] += 1

    def as_dict(self, judge: Judge | None) -> dict:
        checked = self.lines - len(self.problems)
        order = ("input", *STAGES)
        keys = sorted(
            {(stage, check) for stage, check, _ in self.checks},
            key=lambda k: (order.index(k[0]) if k[0] in order else len(order), k),
        )
        n = self.checks
        return {
            "lines": self.lines,
            "checked": checked,
            "kept": self.kept,
            "rejected": checked - self.kept,
            "not_checked": len(self.problems),
            "rejected_by": dict(self.rejected_by.most_common()),
            "problems_by_check": dict(Counter(p["check"] for p in self.problems)),
            "checks": [
                {
                    "stage": stage,
                    "check": check,
                    "checked": n[(stage, check, True)] + n[(stage, check, False)],
                    "passed": n[(stage, check, True)],
                }
                for stage, check in keys
            ],
            "sources": {name: dict(sorted(c.items())) for name, c in sorted(self.sources.items())},
            "judge": None
            if judge is None
            else {"name": judge.name, "model": judge.model, "usage": judge.usage.as_dict()},
            "problems": self.problems,
        }


def _problem(line: Line) -> dict:
    check, reason = line.problem
    return {
        "line": line.number,
        "id": line.id,
        "text": line.text,
        "kept": False,
        "verdicts": [Verdict("input", check, False, reason).row()],
    }


def _index(folder: Path, lines: Callable[[], Iterable[Line]], judge: Judge | None) -> Index:
    """What the folder holds for the ids of ``lines`` (a first pass over them)."""
    ids = {line.id for line in lines() if line.problem is None}
    return Index.load(folder, ids, images=judge is not None)


def _verdict_lines(
    index: Index, lines: Iterable[Line], judge: Judge | None, summary: Summary
) -> Iterator[dict]:
    """One result per input line, in order, verified (and judged) a chunk at a time."""
    chunk: list[Line] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == CHUNK:
            yield from _verify_chunk(chunk, index, judge, summary)
            chunk = []
    yield from _verify_chunk(chunk, index, judge, summary)


def _verify_chunk(
    chunk: list[Line], index: Index, judge: Judge | None, summary: Summary
) -> Iterator[dict]:
    results: list[dict] = []
    targets: list[Target | None] = []
    for line in chunk:
        record = index.records.get(line.id) if line.problem is None else None
        if line.problem is None and record is None:
            why = f"line {line.number}: no target {line.id!r} in the folder"
            line.problem = ("unknown_id", why)
        spec = index.spec(record) if record is not None else None
        if record is not None and spec is None:
            line.problem = (
                "label_spec",
                f"line {line.number}: the manifest has no label {record['source']}/"
                f"{record['label']}",
            )
        if line.problem is not None:
            results.append(_problem(line))
            targets.append(None)
            continue
        source = record["source"]
        verifier = index.verifiers[source]
        verdicts = verifier.query_checks(
            record,
            line.text,
            line.style,
            verifier.target_checks(record),
            index.siblings.by_image.get(record["image_id"], []),
        )
        results.append(
            {
                "line": line.number,
                "id": line.id,
                "text": line.text,
                "kept": False,
                "verdicts": [v.row() for v in verdicts],
            }
        )
        targets.append(Target(record, spec, index.structures[source], verifier.structures))
    if judge is not None:
        pairs = zip(targets, results, strict=True)
        pending = [(t, r) for t, r in pairs if t is not None and _passed_offline(r)]
        answers = judge.judge([(t, r["text"]) for t, r in pending])
        for (_, result), (ok, reason) in zip(pending, answers, strict=True):
            result["verdicts"].append(Verdict("visual", "vlm_judge", ok, reason).row())
    for line, target, result in zip(chunk, targets, results, strict=True):
        if target is not None:
            result["kept"] = _passed_offline(result) and all(
                v["passed"] for v in result["verdicts"]
            )
        summary.add(line, result, target.record["source"] if target else None)
        yield result


@dataclass
class Report:
    """The result of :func:`verify_queries`: one verdict line per input line, and the summary."""

    verdicts: list[dict]
    summary: dict


def verify_queries(
    folder: str | Path,
    queries: str | Path | Iterable[str | Mapping],
    judge: Judge | None = None,
) -> Report:
    """Verify ``queries`` (a JSONL path, or lines / dicts with ``id`` and ``text``) against the
    built (or merged) ``folder``; ``judge`` adds the online VLM judge (see
    :func:`~.commands.make_judge`)."""
    folder = Path(folder)
    if isinstance(queries, (str, Path)):
        path = Path(queries)

        def lines() -> Iterable[Line]:
            return read_lines(path)
    else:
        parsed = [parse_line(n, raw) for n, raw in enumerate(queries, start=1)]

        def lines() -> Iterable[Line]:
            return parsed

    summary = Summary()
    index = _index(folder, lines, judge)
    verdicts = list(_verdict_lines(index, lines(), judge, summary))
    return Report(verdicts, summary.as_dict(judge))


def write_report(
    folder: str | Path, queries: str | Path, report_dir: str | Path, judge: Judge | None = None
) -> dict:
    """Stream the verdicts of a query file to ``report_dir/verdicts.jsonl`` and write
    ``summary.json`` next to it (each by atomic rename); returns the summary."""
    folder, queries, report_dir = Path(folder), Path(queries), Path(report_dir)
    index = _index(folder, lambda: read_lines(queries), judge)
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    results = _verdict_lines(index, read_lines(queries), judge, summary)
    _atomic_write(report_dir / "verdicts.jsonl", (json.dumps(r) + "\n" for r in results))
    out = summary.as_dict(judge)
    out.update(folder=str(folder), queries=str(queries))
    _atomic_write(report_dir / "summary.json", [json.dumps(out, indent=2) + "\n"])
    return out


def _atomic_write(path: Path, chunks: Iterable[str]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(chunks)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- command line -----------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from .commands import GenerationOptions, make_judge

    if args.judge == "openai-compatible" and not args.judge_model:
        raise ValueError("--judge openai-compatible needs --judge-model (the served model)")
    queries = Path(args.queries)
    report_dir = Path(args.report_dir or queries.with_name(f"{queries.stem}-verify"))
    judge = make_judge(
        GenerationOptions(
            generator="none",
            judge=args.judge,
            judge_model=args.judge_model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            cache=args.cache,
            concurrency=args.concurrency,
            timeout=args.timeout,
        )
    )
    try:
        summary = write_report(args.out, queries, report_dir, judge)
    finally:
        if judge is not None:
            judge.close()
    print_summary(summary, report_dir)
    return 0


def print_summary(summary: dict, report_dir: Path) -> None:
    s = summary
    print(
        f"Verified {s['lines']} lines of {s['queries']} against {s['folder']}: checked "
        f"{s['checked']} = kept {s['kept']} + rejected {s['rejected']}; not checked "
        f"{s['not_checked']}"
    )
    for check, count in s["rejected_by"].items():
        print(f"    rejected {count:>6} x at {check}")
    for problem in s["problems"][:10]:
        print(f"  {problem['reason']}")
    if len(s["problems"]) > 10:
        print(f"  ... and {len(s['problems']) - 10} more lines not checked (see summary.json)")
    if s["judge"]:
        u = s["judge"]["usage"]
        print(
            f"  judge {s['judge']['model']}: {u['requests']} requests, {u['cached']} cached, "
            f"${u['cost_usd']:.4f}"
        )
    print(f"report: {report_dir}/verdicts.jsonl, {report_dir}/summary.json")
