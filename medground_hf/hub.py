"""``medground publish``: push a built folder to a Hub dataset repo as one commit, then tag it.

A version is an immutable git tag (``vX.Y.Z``) on the commit holding exactly that folder, so
``load_dataset(repo, config, revision="v1.0.0")`` keeps returning the same data after later
versions are pushed. ``push_to_hub(revision=...)`` would make a branch; we make a tag.

Refusals (before anything is uploaded): a version that is not ``vX.Y.Z``, a tag that already
exists, and a non-commercial source (``commercial_use=False`` or an ``-nc`` licence, in the
manifest or in any record) under a card licence that allows commercial use. The token comes only
from ``HF_TOKEN`` in the environment and is passed to ``HfApi``, never logged or written.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from .folder import MANIFEST, config_splits
from .formats.rows import GROUNDING
from .integrity import check_folder

logger = logging.getLogger("medground_hf")

REPO_TYPE = "dataset"
VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
OPEN_LICENSES = ("other", "unknown")  # licence ids that do not grant commercial use by themselves
KEEP_REMOTE = (".gitattributes",)


class PublishError(RuntimeError):
    """Publishing is refused or failed; the message says why and what to do."""


def is_non_commercial(license_id: str) -> bool:
    """``cc-by-nc-*`` and the like: ``nc`` as one of the licence id's dash-separated parts."""
    return "nc" in license_id.lower().split("-")


def grants_commercial_use(license_id: str) -> bool:
    """Whether a card licence lets anyone use *all* its data commercially."""
    return license_id.lower() not in OPEN_LICENSES and not is_non_commercial(license_id)


def non_commercial_sources(out: Path, manifest: dict) -> list[str]:
    """Sources that forbid commercial use, from the manifest and from the records themselves."""
    found = [
        f"{s['name']} ({s['license']})"
        for s in manifest["sources"]
        if not s.get("commercial_use", False) or is_non_commercial(s["license"])
    ]
    for shard in sorted(out.glob("*/*.parquet")):
        if "source_license" not in pq.read_schema(shard).names:
            continue
        for row in pq.read_table(shard, columns=["source", "source_license"]).to_pylist():
            entry = f"{row['source']} ({row['source_license']})"
            if is_non_commercial(row["source_license"] or "") and entry not in found:
                found.append(entry)
    return found


def check_licence(out: Path, manifest: dict, card_license: str) -> None:
    blocked = non_commercial_sources(out, manifest)
    if blocked and grants_commercial_use(card_license):
        raise PublishError(
            f"{out / 'README.md'}: card licence {card_license!r} allows commercial use, but "
            f"{', '.join(blocked)} must not be used commercially. Build without those sources "
            "or publish under their licence (or `other` with the per-source list)."
        )


@dataclass
class Plan:
    """What ``publish`` will push: files relative to the folder, configs, licence, tag."""

    out: Path
    repo_id: str
    version: str
    license: str
    files: list[str] = field(default_factory=list)
    configs: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        size = sum((self.out / f).stat().st_size for f in self.files)
        lines = [
            f"repo {self.repo_id} (dataset), tag {self.version}, licence {self.license}",
            f"{len(self.files)} files, {size / 2**20:.1f} MiB",
        ]
        lines += [f"  config {c}: {', '.join(s)}" for c, s in self.configs.items()]
        return "\n".join(lines)


def plan(out: str | Path, repo_id: str, version: str) -> Plan:
    """Validate the folder, its licences and the version: every check that needs no network."""
    out = Path(out)
    if not VERSION.match(version):
        raise PublishError(f"version {version!r} is not of the form vX.Y.Z (e.g. v1.0.0)")
    if repo_id.count("/") != 1:
        raise PublishError(f"repo id {repo_id!r} must be ORG/NAME")
    manifest = check_folder(out)
    readme = out / "README.md"
    if not readme.is_file():
        raise PublishError(f"{readme}: missing dataset card (run `medground build` again)")
    card_license = DatasetCard.load(readme).data.license
    if not card_license:
        raise PublishError(f"{readme}: the card declares no licence")
    card_license = card_license if isinstance(card_license, str) else ",".join(card_license)
    check_licence(out, manifest, card_license)
    configs = config_splits(out)
    if GROUNDING not in configs:
        raise PublishError(f"{out}: no {GROUNDING} shards to publish")
    files = ["README.md", MANIFEST]
    files += [
        str(p.relative_to(out))
        for c, splits in configs.items()
        for s in splits
        for p in sorted((out / c).glob(f"{s}-*.parquet"))
    ]
    return Plan(out, repo_id, version, card_license, files, configs)


def _token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise PublishError("HF_TOKEN is not set: export a write token in the environment")
    return token


def publish(
    out: str | Path,
    repo_id: str,
    version: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    planned: Plan | None = None,
) -> dict:
    """Push ``out`` to ``repo_id`` as one commit and tag it ``version``; returns what was done.
    ``planned`` is this same call's :func:`plan` when the caller already made it (to show it)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    todo = planned or plan(out, repo_id, version)
    result = {"repo_id": repo_id, "version": version, "files": todo.files, "dry_run": dry_run}
    if dry_run:
        return result
    api = HfApi(token=_token())
    try:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
        if version in {t.name for t in refs.tags}:
            raise PublishError(
                f"{repo_id}: tag {version} already exists; a published version is never "
                "overwritten, choose a new version"
            )
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE)) if head else set()
        stale = sorted(remote - set(todo.files) - set(KEEP_REMOTE))
        operations = [
            CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(todo.out / f))
            for f in todo.files
        ] + [CommitOperationDelete(path_in_repo=f) for f in stale]
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=f"medground {version}",
            repo_type=REPO_TYPE,
            parent_commit=head,
        )
        api.create_tag(
            repo_id,
            tag=version,
            revision=commit.oid,
            tag_message=f"medground {version}",
            repo_type=REPO_TYPE,
        )
    except HfHubHTTPError as exc:
        raise PublishError(f"{repo_id}: the Hub refused the request: {exc}") from None
    logger.info("published %s at %s as %s", repo_id, commit.oid, version)
    return {**result, "commit": commit.oid, "deleted": stale}
