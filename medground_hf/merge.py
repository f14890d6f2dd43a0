"""``medground merge``: built folders into one dataset: several sources, or the shards of one
source built apart (``medground build --shard i/N``, on one machine or many).

Merging copies the ``grounding`` and ``rejected`` shards per split (renumbered, in the order of
the folders, and of the shard index for a sharded source, so the shards of a build merge back
into exactly the unsharded rows), combines the manifests (sources, builds, counts, skips,
verification statistics), and rewrites the derived configs and the card. Ids carry their
source, so two sources never collide; a source given twice other than as the distinct shards
of one build is refused.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import PIPELINE_VERSION
from .build import COMMAND_KEY, SHARD_CONFIGS, BuildError, already_done, finish_folder
from .folder import FILES, config_shards, config_splits, shard_name, split_key
from .formats.names import DEFAULT_DERIVED, check_selection, selected_configs
from .integrity import check_folder
from .staging import command_key, fault, staged


def _joined(values: Sequence[str | None]) -> str | None:
    """One value where all agree, else every distinct one in order (e.g. two generators)."""
    distinct = list(dict.fromkeys(v for v in values if v))
    return ", ".join(distinct) if distinct else None


def merge_verification(parts: Sequence[dict | None]) -> dict | None:
    """Counts, stage rows and reasons summed, usage added (see ``pipeline.combine``)."""
    present = [p for p in parts if p]
    if not present:
        return None
    if len(present) != len(parts):
        raise BuildError("cannot merge folders built with a generator and folders built without")
    from .generation.pipeline import combine

    return combine(present)


def merge_counts(parts: Sequence[dict]) -> dict:
    splits: dict[str, dict] = {}
    for part in parts:
        for split, c in part["splits"].items():
            into = splits.setdefault(split, {"records": 0, "images": 0, "cases": 0, "labels": {}})
            for key in ("records", "images", "cases"):
                into[key] += c[key]
            into["labels"] = dict(sorted((Counter(into["labels"]) + Counter(c["labels"])).items()))
    scalar = ("items_read", "items_built", "items_skipped", "components_dropped", "image_bytes")
    merged = {key: sum(p.get(key, 0) for p in parts) for key in scalar}
    merged["splits"] = dict(sorted(splits.items(), key=lambda s: split_key(s[0])))
    return merged


def order_parts(folders: Sequence[Path], manifests: Sequence[dict]) -> list[int]:
    """The folders in merge order: as given, a sharded source's shards by shard index; a
    source in several folders must be exactly the shards 0..N-1 of one build."""
    by_source: dict[str, list[int]] = {}
    for index, manifest in enumerate(manifests):
        for source in manifest["sources"]:
            by_source.setdefault(source["name"], []).append(index)
    order: list[int] = []
    for name, indices in by_source.items():
        if len(indices) == 1:
            if indices[0] not in order:
                order.append(indices[0])
            continue
        shards = [manifests[i].get("shard") for i in indices]
        builds = {repr(manifests[i]["builds"]) for i in indices}
        if any(s is None for s in shards) or len(builds) > 1:
            raise BuildError(
                f"source(s) {[name]} appear in more than one folder; merge each once "
                "(or the shards of one build, made with --shard i/N)"
            )
        if len({s.get("listing") for s in shards}) > 1:
            raise BuildError(f"{name}: the shards were built from different listings of the corpus")
        counts = {s["count"] for s in shards}
        seen = sorted(s["index"] for s in shards)
        if len(counts) > 1 or seen != list(range(next(iter(counts)))):
            missing = sorted(set(range(max(counts))) - set(seen))
            repeated = sorted(i for i, k in Counter(seen).items() if k > 1)
            raise BuildError(
                f"{name}: shards of one build must be given once each, all of them "
                f"(counts {sorted(counts)}, missing {missing}, repeated {repeated})"
            )
        order += [i for _, i in sorted(zip((s["index"] for s in shards), indices, strict=True))]
    return order


def _unique(entries: list[dict]) -> list[dict]:
    seen, out = set(), []
    for entry in entries:
        key = repr(sorted(entry.items()))
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


def merge(folders: Sequence[str | Path], out: str | Path, *, overwrite: bool = False) -> dict:
    """Merge built ``folders`` into ``out``; returns the merged manifest."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise BuildError("merge needs at least two built folders")
    manifests = [check_folder(f) for f in folders]
    order = order_parts(folders, manifests)
    folders = [folders[i] for i in order]
    manifests = [manifests[i] for i in order]
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
            present = {s for f in folders for s in config_splits(f).get(config, [])}
            for split in sorted(present, key=split_key):
                parts = [p for f in folders for p in config_shards(f, config, split)]
                (stage.path / config).mkdir(parents=True, exist_ok=True)
                for index, path in enumerate(parts):  # complete shards: copied as they are
                    name = shard_name(split, index, len(parts))
                    shutil.copyfile(path, stage.path / config / name)
        fault("shards")
        manifest = {
            "pipeline_version": _joined([m["pipeline_version"] for m in manifests]),
            "sources": _unique([s for m in manifests for s in m["sources"]]),
            "builds": _unique([b for m in manifests for b in m["builds"]]),
            "counts": merge_counts([m["counts"] for m in manifests]),
            "skipped": sorted(
                (s for m in manifests for s in m["skipped"]),
                key=lambda e: (e["item"], e["stage"]),
            ),
            "merged_from": [f.name for f in folders],
            COMMAND_KEY: key,
        }
        if verification is not None:
            manifest["verification"] = verification
        # what any part wrote (the default for a part that did not choose)
        chosen = {c for m in manifests for c in selected_configs(m)}
        if chosen != set(DEFAULT_DERIVED):
            manifest["derived_configs"] = check_selection(sorted(chosen))
        finish_folder(stage.path, manifest)
    return manifest
