"""Generation + verification over built splits: ``grounding`` and ``rejected`` rows, and stats.

One batched pass writes, per target, its grounding row (kept queries only), one rejected row per
rejected query, and one rejected row for a target rejected as a whole; the rows are then split by
kind. A split is a ``datasets.Dataset`` (``medground generate`` on a whole folder: a
``Dataset.map`` whose output lives in Arrow files on disk, so memory stays flat however large the
corpus) or an Arrow table (a build's chunk, already small: processed in Arrow directly, without
``datasets``' per-operation fingerprints and copies; the image bytes are carried over with
``take``, never converted). Counts identities (queries generated = kept + rejected, targets =
kept + rejected as a whole) are asserted on the output.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from medground_hf.progress import phase_bar
from medground_hf.record import RECORD, record_schema
from medground_hf.schema import features
from medground_hf.source import LabelSpec, SizeClass

from . import vocab
from .base import Generated, GenerationError, Generator, Judge, Target, Usage
from .verify import STAGES, Verdict, Verifier, first_failure, label_terms

if TYPE_CHECKING:
    import pyarrow as pa
    from datasets import Dataset, Features

    Split = Dataset | pa.Table

REJECTED_COLUMNS = {"rejected_stage": "string", "rejected_reason": "string"}
_KIND = "_row_kind"  # grounding | query (one rejected query) | target (rejected as a whole)
_GENERATED = "_queries_generated"  # on the one primary row of each target
_OUT_COLUMNS = [*RECORD, *REJECTED_COLUMNS, _KIND, _GENERATED]
_LIGHT = [
    "id",
    "image_id",
    "source",
    "label",
    "num_candidates",
    "num_targets_in_image",
    "width",
    "height",
    "centroid_xy",
    "spatial",
    "shape",
    "relations",
    "area_px",
    "slice_axis",
    "bbox_xyxy",
    "pixel_spacing_mm",
    "modality",
    "context_boxes",
]


@cache
def rejected_features() -> Features:
    """The ``rejected`` config: the record and the stage and reason of the rejection."""
    return features({**RECORD, **REJECTED_COLUMNS})


@cache
def rejected_schema() -> pa.Schema:
    return rejected_features().arrow_schema


@cache
def _out_features() -> Features:
    """What one pass writes (images left encoded), before it is split by kind."""
    from datasets import Image

    out = features({**RECORD, **REJECTED_COLUMNS, _KIND: "string", _GENERATED: "int32"})
    out["image"] = Image(decode=False)
    return out


_NUMBER = re.compile(r"\d+(?:\.\d+)?")  # reasons are grouped with their numbers masked


class CountsError(RuntimeError):
    """The verification output lost or invented a query or a target."""


@dataclass
class Siblings:
    """Light cues of every target in images with several targets (a query naming its target only
    as "the lesion" must single it out among all of them), and every structure name that occurs
    in relations (for "inside the ..." claims)."""

    by_image: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    structure_names: set[str] = field(default_factory=set)

    @classmethod
    def scan(cls, splits: Mapping[str, Split]) -> Siblings:
        index = cls()
        for split in splits.values():
            for row in _iter_rows(split, _LIGHT):
                for kind in ("inside", "adjacent_to", "contains"):
                    index.structure_names.update(row["relations"][kind])
                if row["num_targets_in_image"] > 1:
                    index.by_image[row["image_id"]].append(row)
        return index


def _rows(batch: Mapping[str, list]) -> list[dict]:
    return [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def _columns(rows: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in _OUT_COLUMNS}


def structure_terms(labels: Mapping[str, LabelSpec], names: set[str]) -> dict[str, str]:
    """Relation name -> how a query says it (label display or the name in words)."""
    out = {name: name.replace("_", " ") for name in names}
    out.update({name: spec.display for name, spec in labels.items() if name in out})
    return out


def verifier_terms(labels: Mapping[str, LabelSpec], names: set[str]) -> dict[str, str]:
    """Every term a query may use for a structure (lower case, American spelling, as the claims
    parser reads queries) -> its relation name."""
    out = {vocab.american(name.replace("_", " ").lower()): name for name in names}
    return {**out, **label_terms(labels)}


class Stage:
    """Generates and verifies one batch of records (the function given to ``Dataset.map``)."""

    def __init__(
        self,
        generator: Generator,
        judge: Judge | None,
        labels: Mapping[str, Mapping[str, LabelSpec]],
        siblings: Siblings,
    ):
        self.generator = generator
        self.judge = judge
        self.labels = labels
        self.siblings = siblings
        self.verifiers = {
            source: Verifier(
                specs, verifier_terms(specs, siblings.structure_names), judge=judge is not None
            )
            for source, specs in labels.items()
        }
        self.structures = {
            source: structure_terms(specs, siblings.structure_names)
            for source, specs in labels.items()
        }

    def target(self, record: dict) -> Target:
        source = record["source"]
        if source not in self.labels or record["label"] not in self.labels[source]:
            raise KeyError(f"{record['id']}: no label spec for {source}/{record['label']}")
        spec = self.labels[source][record["label"]]
        siblings = [
            s for s in self.siblings.by_image.get(record["image_id"], []) if s["id"] != record["id"]
        ]
        return Target(
            record, spec, self.structures[source], self.verifiers[source].structures, siblings
        )

    def target_checks(self, record: Mapping) -> dict[str, list[Verdict]]:
        return self.verifiers[record["source"]].target_checks(record)

    def wanted(self, record: Mapping) -> bool:
        """Whether to ask the generator: a target failing a target-level check (box, priors,
        offline visual) is rejected as a whole without a (paid) request."""
        return _failure(self.target_checks(record)) is None

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        records = _rows(batch)
        targets = [self.target(r) for r in records]
        target_checks = [self.target_checks(r) for r in records]
        failures = [_failure(checks) for checks in target_checks]
        answers = iter(self.generate([t for t, f in zip(targets, failures, strict=True) if not f]))
        generated = [Generated() if failure else next(answers) for failure in failures]
        queries = [
            self.check(t, g, c) for t, g, c in zip(targets, generated, target_checks, strict=True)
        ]
        if self.judge is not None:
            self.judge_queries(targets, queries)
        out: list[dict] = []
        for target, gen, failure, qs in zip(targets, generated, failures, queries, strict=True):
            out += self.assemble(target.record, gen, failure, qs)
        return _columns(out)

    def generate(self, targets: list[Target]) -> list[Generated]:
        """The generator's output, one per target, where one target's failure is that target's
        alone: an exception raised for a batch is retried target by target, and a target whose
        own call raises (or whose slot in the answer holds an exception) gets a ``generation``
        failure with the exception as its reason. Only a :class:`GenerationError` (service down
        after retries, bad credentials: nothing would succeed) stops the run."""
        if not targets:
            return []
        try:
            answers = self.generator.generate(targets)
        except GenerationError:
            raise
        except Exception as exc:  # noqa: BLE001 - any per-target failure becomes a reject
            if len(targets) == 1:
                return [_failed(exc)]
            return [answer for target in targets for answer in self.generate([target])]
        if len(answers) != len(targets):
            raise GenerationError(
                f"generator {self.generator.name!r} answered {len(answers)} of "
                f"{len(targets)} targets"
            )
        return [_failed(a) if isinstance(a, Exception) else a for a in answers]

    def check(self, target: Target, gen: Generated, target_checks: dict) -> list[dict]:
        record = target.record
        verifier = self.verifiers[record["source"]]
        siblings = self.siblings.by_image.get(record["image_id"], [])
        queries = []
        seen: set[str] = set()
        for item in gen.items:
            text, style = item.get("text"), item.get("style")
            key = " ".join(text.lower().split()) if isinstance(text, str) else None
            if key in seen:  # a VLM may write the same expression twice
                verdicts = [Verdict("format", "duplicate", False, "repeats another query")]
            else:
                verdicts = verifier.query_checks(record, text, style, target_checks, siblings)
            seen.add(key)
            queries.append(
                {
                    "text": text if isinstance(text, str) else json.dumps(item)[:200],
                    "style": style if isinstance(style, str) else "",
                    "generator": self.generator.name,
                    "model": self.generator.model,
                    "prompt_version": self.generator.prompt_version,
                    "kept": False,
                    "verdicts": [v.row() for v in verdicts],
                }
            )
        return queries

    def judge_queries(self, targets: list[Target], queries: list[list[dict]]) -> None:
        """The online visual judge, for the queries that passed every offline check."""
        pending = [
            (target, query)
            for target, qs in zip(targets, queries, strict=True)
            for query in qs
            if _passed_offline(query)
        ]
        answers = self.judge.judge([(t, q["text"]) for t, q in pending])
        for (_, query), (ok, reason) in zip(pending, answers, strict=True):
            query["verdicts"].append(Verdict("visual", "vlm_judge", ok, reason).row())

    def assemble(
        self, record: dict, gen: Generated, failed_target: Verdict | None, queries: list[dict]
    ) -> list[dict]:
        for query in queries:
            query["kept"] = _passed_offline(query) and all(v["passed"] for v in query["verdicts"])
        kept = [q for q in queries if q["kept"]]
        rejected = [q for q in queries if not q["kept"]]

        def row(kind: str, qs: list[dict], stage: str | None, reason: str | None, n: int) -> dict:
            return {
                **record,
                "queries": qs,
                "rejected_stage": stage,
                "rejected_reason": reason,
                _KIND: kind,
                _GENERATED: n,
            }

        n = len(gen.items)
        if failed_target is not None:
            return [row("target", queries, failed_target.stage, failed_target.reason, n)]
        if gen.failure is not None:
            return [row("target", queries, *gen.failure, n)]
        if not queries:
            return [row("target", [], "generation", "the generator wrote no query", n)]
        out = []
        for query in rejected:
            failure = first_failure(query["verdicts"])
            out.append(row("query", [query], failure["stage"], failure["reason"], 0))
        if kept:
            out.append(row("grounding", kept, None, None, n))
        else:
            reason = f"all {n} queries rejected"
            out.append(row("target", [], "verification", reason, n))
        return out


MAX_REASON_CHARS = 300


def _failed(exc: Exception) -> Generated:
    """A target the generator failed on: rejected at ``generation`` with the error's message."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return Generated(failure=("generation", reason))


def _failure(target_checks: Mapping[str, list[Verdict]]) -> Verdict | None:
    return next((v for stage in STAGES[1:] for v in target_checks[stage] if not v.passed), None)


def _passed_offline(query: dict) -> bool:
    stages = {v["stage"] for v in query["verdicts"]}
    return "visual" in stages and all(v["passed"] for v in query["verdicts"])


@dataclass
class Outcome:
    """Kept and rejected rows per split (of the splits' kind: datasets or Arrow tables)."""

    grounding: dict[str, Split]
    rejected: dict[str, Split]
    verification: dict


def run(
    splits: Mapping[str, Split],
    labels: Mapping[str, Mapping[str, LabelSpec]],
    generator: Generator,
    judge: Judge | None = None,
    *,
    batch_size: int = 256,
    structures: Iterable[str] = (),
    progress: bool = True,
) -> Outcome:
    """Generate and verify every split; returns kept and rejected rows and the manifest entry.

    ``structures`` adds structure names found elsewhere in the corpus (a build verifies chunk
    by chunk, and every chunk must know every name the whole corpus uses). ``progress=False``:
    no bar (a build draws one for all its chunks).
    """
    siblings = Siblings.scan(splits)
    siblings.structure_names.update(structures)
    stage = Stage(generator, judge, labels, siblings)
    raw = {name: _raw_images(split) for name, split in splits.items()}
    if any(len(split) for split in raw.values()):
        generator.prefetch(
            stage.target(r) for split in raw.values() for r in _iter_rows(split) if stage.wanted(r)
        )
    grounding: dict[str, Split] = {}
    rejected: dict[str, Split] = {}
    stats = _Stats()
    total = sum(len(split) for split in raw.values())
    bar = phase_bar("generate+verify", total, "target", disable=not progress)

    def counted(batch: Mapping[str, list]) -> dict[str, list]:
        out = stage(batch)
        bar.update(len(batch["id"]))
        return out

    for name, split in raw.items():
        if not len(split):
            continue
        if _is_table(split):
            grounding[name], rejected[name] = _run_table(
                split, counted, batch_size, stats, images=generator.sees_images or judge is not None
            )
        else:
            grounding[name], rejected[name] = _run_dataset(split, counted, batch_size, stats)
    bar.close()
    usage = Usage()
    usage.add(generator.usage)
    if judge is not None:
        usage.add(judge.usage)
    verification = stats.manifest(generator, usage)
    return Outcome(grounding, rejected, verification)


def _is_table(split: Split) -> bool:
    return not hasattr(split, "cast_column")  # an Arrow table, not a ``datasets.Dataset``


def _raw_images(split: Split) -> Split:
    """The split with its images as encoded bytes (what generators send and rows carry)."""
    if _is_table(split):
        return split  # Arrow holds the bytes as they are
    from datasets import Image

    return split.cast_column("image", Image(decode=False))


def _iter_rows(split: Split, columns: list[str] | None = None, batch_size: int = 64):
    """Rows of a split as dicts (only ``columns``, when given)."""
    if _is_table(split):
        table = split.select(list(dict.fromkeys(columns))) if columns else split
        for batch in table.to_batches(batch_size):
            yield from batch.to_pylist()
        return
    if columns:
        split = split.select_columns(list(dict.fromkeys(columns)))
    for batch in split.iter(batch_size=batch_size):
        yield from _rows(batch)


_STATS_COLUMNS = ["source", "queries", "rejected_stage", "rejected_reason", _KIND, _GENERATED]


def _run_dataset(ds: Dataset, stage, batch_size: int, stats: _Stats) -> tuple[Dataset, Dataset]:
    """One split as a ``Dataset.map`` (output in Arrow files beside the input's), then split by
    kind."""
    from datasets import Image

    # Each run is new (answers may differ between runs of a VLM): a fresh fingerprint, and no
    # transform of this run may be loaded from an earlier run's cache files.
    out = ds.map(
        stage,
        batched=True,
        batch_size=batch_size,
        remove_columns=ds.column_names,
        features=_out_features(),
        load_from_cache_file=False,
        new_fingerprint=f"{ds._fingerprint}-{uuid.uuid4().hex[:16]}",
    )
    stats.add(_iter_rows(out, _STATS_COLUMNS, 1000), len(ds))

    def select(kinds: set[str], drop: list[str]) -> Dataset:
        picked = out.filter(
            lambda column: [k in kinds for k in column],
            input_columns=_KIND,
            batched=True,
            load_from_cache_file=False,
        )
        return picked.remove_columns(drop).cast_column("image", Image())

    return (
        select({"grounding"}, [_KIND, _GENERATED, *REJECTED_COLUMNS]),
        select({"query", "target"}, [_KIND, _GENERATED]),
    )


def _run_table(
    table: pa.Table, stage, batch_size: int, stats: _Stats, *, images: bool
) -> tuple[pa.Table, pa.Table]:
    """One split held as an Arrow table (a build's chunk): each batch's rows go through the stage
    (their images as Python bytes only when the generator or judge looks at them: ``images``),
    and each output row takes its image from its record's row, in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    light = _out_features().arrow_schema
    light = light.remove(light.get_field_index("image"))
    parts = []
    for batch in table.to_batches(batch_size):
        rows = (batch if images else batch.drop_columns(["image"])).to_pydict()
        rows.setdefault("image", [None] * batch.num_rows)
        out = stage(rows)
        stats.add(_rows({k: out[k] for k in _STATS_COLUMNS}), None)
        at = {target: index for index, target in enumerate(rows["id"])}
        source = pa.array([at[target] for target in out["id"]], pa.int64())
        part = pa.Table.from_pydict({k: v for k, v in out.items() if k != "image"}, schema=light)
        parts.append(part.append_column("image", batch.column("image").take(source)))
    stats.check(len(table))
    out = pa.concat_tables(parts)
    grounding = pc.equal(out.column(_KIND), "grounding")
    return (
        out.filter(grounding).select(record_schema().names).cast(record_schema()),
        out.filter(pc.invert(grounding)).select(rejected_schema().names).cast(rejected_schema()),
    )


class _Stats:
    """Pass counts per stage and source, reasons, and the counts identities."""

    def __init__(self) -> None:
        self.checked: Counter = Counter()
        self.passed: Counter = Counter()
        self.reasons: Counter = Counter()
        self.generated = self.kept = self.rejected = 0
        self.targets = self.targets_kept = self.targets_rejected = 0
        self._primary = 0  # primary rows counted since the last check

    def add(self, rows: Iterable[dict], n_targets: int | None) -> None:
        """Count output rows; ``n_targets``: the targets they came from, checked against them
        (None: more rows of the same targets follow, :meth:`check` comes last)."""
        for row in rows:
            kind = row[_KIND]
            self.generated += row[_GENERATED]
            self._primary += kind != "query"
            if kind == "grounding":
                self.kept += len(row["queries"])
                self.targets_kept += 1
            else:
                self.rejected += len(row["queries"])
                reason = _NUMBER.sub("#", row["rejected_reason"])
                self.reasons[(row["rejected_stage"], reason)] += 1
                self.targets_rejected += kind == "target"
            for query in row["queries"]:
                self._count(row["source"], query["verdicts"])
            if kind == "target" and not row["queries"] and row["rejected_stage"] in STAGES:
                key = (row["rejected_stage"], row["source"])
                self.checked[key] += 1
        if n_targets is not None:
            self.check(n_targets)

    def check(self, n_targets: int) -> None:
        """The counts identities, once the rows of ``n_targets`` more targets are counted."""
        primary, self._primary = self._primary, 0
        self.targets += n_targets
        if primary != n_targets:
            raise CountsError(f"{n_targets} targets in, {primary} kept or rejected as a whole")
        if self.generated != self.kept + self.rejected:
            raise CountsError(
                f"queries generated {self.generated} != kept {self.kept} + rejected {self.rejected}"
            )
        if self.targets != self.targets_kept + self.targets_rejected:
            raise CountsError(
                f"targets {self.targets} != kept {self.targets_kept} + "
                f"rejected {self.targets_rejected}"
            )

    def _count(self, source: str, verdicts: list[dict]) -> None:
        by_stage: dict[str, bool] = {}
        for v in verdicts:
            by_stage[v["stage"]] = by_stage.get(v["stage"], True) and v["passed"]
        for stage, ok in by_stage.items():
            self.checked[(stage, source)] += 1
            self.passed[(stage, source)] += ok

    def manifest(self, generator: Generator, usage: Usage) -> dict:
        keys = sorted(self.checked, key=lambda k: (STAGES.index(k[0]), k[1]))
        return {
            "generator": generator.name,
            "model": generator.model,
            "prompt_version": generator.prompt_version,
            "lexicons": vocab.lexicon_versions(),
            "queries_generated": self.generated,
            "queries_kept": self.kept,
            "queries_rejected": self.rejected,
            "targets_total": self.targets,
            "targets_kept": self.targets_kept,
            "targets_rejected": self.targets_rejected,
            "stages": [
                {
                    "stage": stage,
                    "source": source,
                    "checked": self.checked[(stage, source)],
                    "passed": self.passed[(stage, source)],
                }
                for stage, source in keys
            ],
            "reasons": [
                {"stage": stage, "reason": reason, "count": count}
                for (stage, reason), count in sorted(
                    self.reasons.items(), key=lambda kv: (-kv[1], kv[0])
                )
            ],
            "usage": usage.as_dict(),
        }


_SUMMED = (
    "queries_generated",
    "queries_kept",
    "queries_rejected",
    "targets_total",
    "targets_kept",
    "targets_rejected",
)


def _joined(values: Iterable[str | None]) -> str | None:
    """One value where all agree, else every distinct one in order (e.g. two generators)."""
    distinct = list(dict.fromkeys(v for v in values if v))
    return ", ".join(distinct) if distinct else None


def combine(parts: Iterable[dict]) -> dict:
    """One verification entry from several (the chunks of a build, shards, merged folders):
    counts, stage rows per (stage, source) and reasons summed, usage added, names joined."""
    parts = list(parts)
    checked: Counter = Counter()
    passed: Counter = Counter()
    reasons: Counter = Counter()
    usage: Counter = Counter(dict.fromkeys(Usage().as_dict(), 0))
    for part in parts:
        for row in part["stages"]:
            checked[(row["stage"], row["source"])] += row["checked"]
            passed[(row["stage"], row["source"])] += row["passed"]
        reasons.update({(r["stage"], r["reason"]): r["count"] for r in part["reasons"]})
        usage.update(part.get("usage") or {})
    merged: dict = {key: sum(p[key] for p in parts) for key in _SUMMED}
    keys = sorted(checked, key=lambda k: (STAGES.index(k[0]), k[1]))
    merged.update(
        generator=_joined(p["generator"] for p in parts),
        model=_joined(p.get("model") for p in parts),
        prompt_version=_joined(p["prompt_version"] for p in parts),
        stages=[
            {"stage": st, "source": so, "checked": checked[(st, so)], "passed": passed[(st, so)]}
            for st, so in keys
        ],
        reasons=[
            {"stage": stage, "reason": reason, "count": count}
            for (stage, reason), count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        usage={k: round(v, 6) if k == "cost_usd" else v for k, v in usage.items()},
    )
    return merged


def labels_of(sources: list) -> dict[str, dict[str, LabelSpec]]:
    """Label specs per source, from SourceInfo objects or the manifest's ``sources`` entries."""
    out: dict[str, dict[str, LabelSpec]] = {}
    for source in sources:
        if isinstance(source, Mapping):
            specs = [_spec_from_dict(d) for d in source["labels"]]
            out[source["name"]] = {s.name: s for s in specs}
        else:
            out[source.name] = {s.name: s for s in source.labels}
    return out


def _spec_from_dict(data: Mapping) -> LabelSpec:
    """A LabelSpec from its manifest entry (JSON lists back to tuples; fields an older manifest
    lacks take their defaults)."""
    known = {f for f in LabelSpec.__dataclass_fields__}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
    values["size_classes"] = tuple(
        c if isinstance(c, SizeClass) else SizeClass(**c) for c in values.get("size_classes", ())
    )
    return LabelSpec(**values)


__all__ = ["Outcome", "Siblings", "Stage", "combine", "labels_of", "run"]
