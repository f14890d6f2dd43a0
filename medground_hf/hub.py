"""``medground publish``: push a built folder to a Hub dataset repo as one commit, then tag it.

A version is an immutable git tag (``vX.Y.Z``) on the commit holding exactly that folder, so
``load_dataset(repo, config, revision="v1.0.0")`` keeps returning the same data after later
versions are pushed. ``push_to_hub(revision=...)`` would make a branch; we make a tag.

Refusals (before anything is uploaded): a version that is not ``vX.Y.Z``, a tag that already
exists, a folder whose files do not match its manifest, and a card licence that does not honour
every source's licence terms (:mod:`medground_hf.licences`: NC stays NC, ShareAlike keeps its
licence family, NoDerivatives sources cannot be published, ``other``/``unknown`` only with the
per-source licence list). The token comes only from ``HF_TOKEN`` in the environment and is
passed to ``HfApi``, never logged or written.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from huggingface_hub import DatasetCard

from . import licences
from .errors import PublishError
from .folder import MANIFEST, config_splits
from .formats.rows import GROUNDING
from .integrity import check_folder

logger = logging.getLogger("medground_hf")

REPO_TYPE = "dataset"
VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
KEEP_REMOTE = (".gitattributes",)


def record_licences(out: Path) -> set[tuple[str, str]]:
    """(source, licence) pairs the records themselves carry, across every config."""
    found: set[tuple[str, str]] = set()
    for shard in sorted(out.glob("*/*.parquet")):
        if "source_license" not in pq.read_schema(shard).names:
            continue
        table = pq.read_table(shard, columns=["source", "source_license"])
        pairs = zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
        found.update((name, lid or "unknown") for name, lid in pairs)
    return found


def check_licence(out: Path, manifest: dict, card_data) -> list[str]:
    """The card's licence(s), refused (PublishError) unless they honour every source's terms."""
    card = licences.card_licences(card_data.license)
    sources = licences.sources_of(manifest, record_licences(out))
    details = getattr(card_data, "license_details", None)
    found = licences.problems(sources, card, details)
    if found:
        raise PublishError(
            f"{out / 'README.md'}: licence {card} refused: " + "; ".join(found) + ". Publish "
            "under the sources' own licence (the card `medground build` writes), or `other` "
            "with the per-source list."
        )
    return card


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
    card_license = ", ".join(check_licence(out, manifest, DatasetCard.load(readme).data))
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
