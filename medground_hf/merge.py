"""``medground merge``: several built folders (one per source) into one multi-source dataset.

A release such as MedGround-35K mixes corpora. Each source is built on its own (its own builder,
options and errors); merging concatenates their ``grounding`` and ``rejected`` shards per split,
combines the manifests (sources, builds, counts, skips, verification statistics), and rewrites
the derived configs and the card from the merged records. Ids carry their source, so two sources
can never collide; a repeated id means the same source was given twice, which is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from . import PIPELINE_VERSION
from .build import COMMAND_KEY, BuildError, already_done, finish_folder
from .folder import FILES, config_splits, split_key, write_split
from .formats.configs import check_selection
from .integrity import check_folder
from .progress import quiet_datasets
from .staging import command_key, fault, staged

SHARD_CONFIGS = ("grounding", "rejected")
_SUMMED = (
    "queries_generated",
    "queries_kept",
    "queries_rejected",
    "targets_total",
    "targets_kept",
    "targets_rejected",
)


def _joined(values: Sequence[str | None]) -> str | None:
    """One value where all agree, else every distinct one in order (e.g. two generators)."""
    distinct = list(dict.fromkeys(v for v in values if v))
    return ", ".join(distinct) if distinct else None


def merge_verification(parts: Sequence[dict | None]) -> dict | None:
    """Sum the counts, keep per-source stage rows, add reasons and usage up."""
    present = [p for p in parts if p]
    if not present:
        return None
    if len(present) != len(parts):
        raise BuildError("cannot merge folders built with a generator and folders built without")
    reasons: Counter = Counter()
    usage: Counter = Counter()
    for part in present:
        reasons.update({(r["stage"], r["reason"]): r["count"] for r in part["reasons"]})
        usage.update(part.get("usage") or {})
    merged = {key: sum(p[key] for p in present) for key in _SUMMED}
    merged.update(
        generator=_joined([p["generator"] for p in present]),
        model=_joined([p.get("model") for p in present]),
        prompt_version=_joined([p["prompt_version"] for p in present]),
        stages=[stage for p in present for stage in p["stages"]],
        reasons=[
            {"stage": stage, "reason": reason, "count": count}
            for (stage, reason), count in reasons.most_common()
        ],
        usage=dict(usage),
    )
    return merged


def merge_counts(parts: Sequence[dict]) -> dict:
    splits: dict[str, dict] = {}
    for part in parts:
        for split, c in part["splits"].items():
            into = splits.setdefault(split, {"records": 0, "images": 0, "cases": 0, "labels": {}})
            for key in ("records", "images", "cases"):
                into[key] += c[key]
            into["labels"] = dict(sorted((Counter(into["labels"]) + Counter(c["labels"])).items()))
    scalar = ("items_read", "items_built", "items_skipped", "components_dropped")
    merged = {key: sum(p[key] for p in parts) for key in scalar}
    merged["splits"] = dict(sorted(splits.items(), key=lambda s: split_key(s[0])))
    return merged


@quiet_datasets()
def merge(folders: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> dict:
    """Merge built ``folders`` into ``out``; returns the merged manifest."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise BuildError("merge needs at least two built folders")
    manifests = [check_folder(f) for f in folders]
    names = [s["name"] for m in manifests for s in m["sources"]]
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise BuildError(f"source(s) {repeated} appear in more than one folder; merge each once")
    verification = merge_verification([m.get("verification") for m in manifests])
    out = Path(out)
    key = command_key(
        "merge",
        {"inputs": [m[FILES] for m in manifests], "pipeline_version": PIPELINE_VERSION},
    )
    done = already_done(out, key, overwrite)
    if done is not None:
        return done
    with staged(out, key) as stage:
        for config in SHARD_CONFIGS:
            splits = sorted(
                {s for f in folders for s in config_splits(f).get(config, [])}, key=split_key
            )
            for split in splits:
                parts = [
                    Dataset.from_parquet(files, cache_dir=str(stage.scratch))
                    for f in folders
                    if (files := [str(p) for p in sorted((f / config).glob(f"{split}-*.parquet"))])
                ]
                write_split(stage.path, config, split, concatenate_datasets(parts))
        fault("shards")
        manifest = {
            "pipeline_version": _joined([m["pipeline_version"] for m in manifests]),
            "sources": [s for m in manifests for s in m["sources"]],
            "builds": [b for m in manifests for b in m["builds"]],
            "counts": merge_counts([m["counts"] for m in manifests]),
            "skipped": [s for m in manifests for s in m["skipped"]],
            "merged_from": [f.name for f in folders],
            COMMAND_KEY: key,
        }
        if verification is not None:
            manifest["verification"] = verification
        chosen = [m["derived_configs"] for m in manifests if "derived_configs" in m]
        if len(chosen) == len(manifests):  # every part chose: write what any of them wanted
            manifest["derived_configs"] = check_selection(
                sorted({c for part in chosen for c in part})
            )
        finish_folder(stage.path, manifest)
    return manifest
