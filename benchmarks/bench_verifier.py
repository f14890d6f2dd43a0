"""How well the verifier tells true queries from false ones: the adversarial suite, scored.

Every query of ``tests/data/adversarial/queries.jsonl`` (written by
``benchmarks/adversarial/make_suite.py`` from the raw masks and affines, independently of the
verifier) goes through the project's verifier exactly as ``medground verify`` runs it
(:func:`medground_hf.generation.reverify.verify_queries`, offline stages, no judge) against the
default builds of the three samples. Queries about a target that the build rejects as a whole
(a target-level check: box, label priors, offline visual contrast) are not scored: they say
nothing about how claims are read; their number is printed. Printed: per claim type, the share
of false claims rejected and of true queries kept, then overall, and every negated query the
verifier got wrong (a false negation kept, or a true one rejected, is a negation read as its
positive or not understood).

Targets (issue 9): at least 99 % of false claims rejected in every claim type, at least 95 % of
true queries kept.

Run:  python benchmarks/bench_verifier.py [--data ../shared/data] [--built DIR]
      [--suite tests/data/adversarial/queries.jsonl] [--show 5]
``--built`` holds the builds ``kvasir_seg``, ``hc18`` and ``brats2013`` (default ``medground
build`` of each sample); without it they are built in a temporary folder (about 30 s).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medground_hf.generation.reverify import verify_queries

from medground_hf.build import build
from medground_hf.folder import iter_rows

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests" / "data" / "adversarial" / "queries.jsonl"
SAMPLES = {"kvasir_seg": "kvasir_seg", "hc18": "hc18", "brats2013": "brats"}  # folder: builder
TARGET_STAGES = ("geometry", "medical_prior", "visual")  # of a target rejected as a whole
FALSE_REJECTED_MIN = 0.99
TRUE_KEPT_MIN = 0.95


@dataclass
class Tally:
    false: int = 0
    false_rejected: int = 0
    true: int = 0
    true_kept: int = 0

    def add(self, truth: bool, kept: bool) -> None:
        if truth:
            self.true += 1
            self.true_kept += kept
        else:
            self.false += 1
            self.false_rejected += not kept

    @property
    def false_rejected_rate(self) -> float | None:
        return self.false_rejected / self.false if self.false else None

    @property
    def true_kept_rate(self) -> float | None:
        return self.true_kept / self.true if self.true else None


@dataclass
class Score:
    """Tallies per claim type and overall, and the wrong answers (with the first failing
    verdict, or the last verdict of a kept query)."""

    by_type: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    overall: Tally = field(default_factory=Tally)
    negated: Tally = field(default_factory=Tally)
    wrong: list[dict] = field(default_factory=list)
    unscored: int = 0  # queries about targets rejected as a whole

    def failing_types(self) -> list[str]:
        """Claim types below the targets: false claims rejected < 99 % (any type) or true
        queries kept < 95 % (overall)."""
        out = [
            kind
            for kind, t in sorted(self.by_type.items())
            if t.false and t.false_rejected_rate < FALSE_REJECTED_MIN
        ]
        if self.overall.true and self.overall.true_kept_rate < TRUE_KEPT_MIN:
            out.append("true queries overall")
        return out

    def negation_errors(self) -> list[dict]:
        return [w for w in self.wrong if w["negated"]]


def score(
    suite: Sequence[Mapping], verdicts: Sequence[Mapping], unscored: Collection[str] = ()
) -> Score:
    """Compare each suite item's truth with the verifier's ``kept`` (same order, same ids);
    items about the targets ``unscored`` are counted apart."""
    if len(suite) != len(verdicts):
        raise ValueError(f"{len(suite)} suite items, {len(verdicts)} verdict lines")
    out = Score()
    for item, result in zip(suite, verdicts, strict=True):
        if (item["id"], item["text"]) != (result["id"], result["text"]):
            raise ValueError(f"verdict line out of order: {result['id']} {result['text']!r}")
        if item["id"] in unscored:
            out.unscored += 1
            continue
        kept = bool(result["kept"])
        out.by_type[item["claim_type"]].add(item["truth"], kept)
        out.overall.add(item["truth"], kept)
        if item["negated"]:
            out.negated.add(item["truth"], kept)
        if kept != item["truth"]:
            failed = [v for v in result["verdicts"] if not v["passed"]]
            shown = failed[0] if failed else result["verdicts"][-1]
            out.wrong.append(
                {**item, "verdict": f"[{shown['stage']}/{shown['check']}] {shown['reason']}"}
            )
    return out


def read_suite(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run_suite(suite: Sequence[Mapping], folders: Mapping[str, Path]) -> list[dict]:
    """Verdict lines for every suite item, in suite order: each source's queries are verified
    against its own build (the source is the first part of the id)."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(suite):
        by_source[item["id"].split("/", 1)[0]].append(i)
    out: list[dict | None] = [None] * len(suite)
    for source, indices in by_source.items():
        if source not in folders:
            raise ValueError(f"the suite has queries on {source!r}, no build of it was given")
        report = verify_queries(folders[source], [suite[i] for i in indices])
        for i, line in zip(indices, report.verdicts, strict=True):
            out[i] = line
    return out


def rejected_as_whole(folders: Mapping[str, Path]) -> set[str]:
    """Ids of the targets a build rejected by a target-level check (README: ``rejected``)."""
    return {
        row["id"]
        for folder in folders.values()
        for row in iter_rows(folder, "rejected", columns=["id", "queries", "rejected_stage"])
        if not row["queries"] and row["rejected_stage"] in TARGET_STAGES
    }


def build_samples(data: Path, work: Path) -> dict[str, Path]:
    """The default ``medground build`` of each sample (derived configs left out: not needed)."""
    out = {}
    for folder, builder in SAMPLES.items():
        out[folder] = work / folder
        build(builder, data / folder, out[folder], derived_configs=[])
    return out


def _rate(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.1%}"


def table(s: Score) -> str:
    """The confusion table per claim type, negated queries and overall, and the verdict."""
    lines = [
        f"{'claim type':<16} {'false':>6} {'rejected':>8} {'%':>6}   {'true':>5} {'kept':>5} "
        f"{'%':>6}"
    ]
    failing = s.failing_types()
    rows = [*sorted(s.by_type.items()), ("negated (any)", s.negated), ("overall", s.overall)]
    for kind, t in rows:
        flag = " <" if kind in failing else ""
        lines.append(
            f"{kind:<16} {t.false:>6} {t.false_rejected:>8} {_rate(t.false_rejected_rate)}   "
            f"{t.true:>5} {t.true_kept:>5} {_rate(t.true_kept_rate)}{flag}"
        )
    lines.append(
        f"targets: false rejected >= {FALSE_REJECTED_MIN:.0%} in every type, true kept >= "
        f"{TRUE_KEPT_MIN:.0%}: " + ("met" if not failing else f"NOT met ({', '.join(failing)})")
    )
    lines.append(f"negated queries answered wrongly: {len(s.negation_errors())}")
    return "\n".join(lines)


def examples(wrong: Sequence[Mapping], show: int) -> str:
    """Up to ``show`` wrong answers per claim type: query, why it is true/false, the verdict."""
    by_type: dict[str, list[Mapping]] = defaultdict(list)
    for w in wrong:
        by_type[w["claim_type"]].append(w)
    lines = []
    for kind, items in sorted(by_type.items()):
        lines.append(f"wrong on {kind} ({len(items)}):")
        for w in items[:show]:
            what = "false kept" if not w["truth"] else "true rejected"
            lines.append(f"  {what}: {w['text']!r} ({w['id']})")
            lines.append(f"      {w['note']}\n      {w['verdict']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--built", type=Path, default=None, help="folder holding the three builds")
    p.add_argument("--suite", type=Path, default=SUITE)
    p.add_argument("--show", type=int, default=3, help="wrong answers shown per claim type")
    args = p.parse_args(argv)
    suite = read_suite(args.suite)
    with tempfile.TemporaryDirectory(prefix="medground-bench-verifier-") as tmp:
        start = time.perf_counter()
        folders = (
            {folder: args.built / folder for folder in SAMPLES}
            if args.built
            else build_samples(args.data, Path(tmp))
        )
        built = time.perf_counter() - start
        start = time.perf_counter()
        verdicts = run_suite(suite, folders)
        took = time.perf_counter() - start
        result = score(suite, verdicts, rejected_as_whole(folders))
    print(
        f"{len(suite)} queries from {args.suite}; builds {built:.1f} s, verification "
        f"{took:.1f} s ({len(suite) / took:.0f} queries/s)"
    )
    print(f"not scored: {result.unscored} queries about targets the build rejects as a whole")
    print(table(result))
    if args.show:
        print("negated queries answered wrongly:")
        print(examples(result.negation_errors(), args.show))
        print(examples(result.wrong, args.show))
    return 0


if __name__ == "__main__":
    sys.exit(main())
