"""The one check every reader of a built folder runs: its shards must match its manifest.

The manifest lists every Parquet shard with its size, row count and sha256 (written with it, see
:func:`medground_hf.folder.write_manifest`). :func:`check_folder` refuses a folder whose shards do
not match, naming the file: a shard truncated or edited after the build, one left over by an
interrupted run of an older version, one missing. ``publish``, ``merge``, ``export``, ``view``,
``eval``, ``generate`` and ``verify`` call it before reading anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .folder import FILES, MANIFEST, parquet_rows, read_manifest, sha256_of, shard_paths
from .staging import recover


class FolderMismatch(ValueError):
    """A folder's files do not match its manifest; the message names the file."""


def check_folder(out: str | Path, configs: Iterable[str] | None = None) -> dict:
    """Refuse a folder whose shards differ from its manifest; returns the manifest.

    ``configs`` limits the check to those configs (e.g. a Hub download of ``grounding`` only).
    """
    out = Path(out)
    recover(out)
    manifest = read_manifest(out)
    recorded = manifest.get(FILES)
    if not isinstance(recorded, dict):
        raise FolderMismatch(
            f"{out / MANIFEST}: lists no shard hashes (written by an older medground-hf): "
            "rebuild the folder"
        )
    wanted = None if configs is None else set(configs)

    def chosen(rel: str) -> bool:
        return wanted is None or rel.split("/", 1)[0] in wanted

    for rel in shard_paths(out):
        if chosen(rel) and rel not in recorded:
            raise FolderMismatch(
                f"{out / rel}: not listed in {MANIFEST} (added by hand, or left by an "
                "interrupted run of an older version): rebuild the folder or remove the file"
            )
    for rel, expected in sorted(recorded.items()):
        if not chosen(rel):
            continue
        path = out / rel
        if not path.is_file():
            raise FolderMismatch(f"{path}: listed in {MANIFEST} but missing")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise FolderMismatch(
                f"{path}: {size} bytes where {MANIFEST} says {expected['bytes']} (truncated or "
                "rewritten after the build): rebuild the folder"
            )
        rows = parquet_rows(path)
        if rows != expected["rows"]:
            raise FolderMismatch(f"{path}: {rows} rows where {MANIFEST} says {expected['rows']}")
        if sha256_of(path) != expected["sha256"]:
            raise FolderMismatch(
                f"{path}: content differs from the sha256 in {MANIFEST} (modified after the "
                "build): rebuild the folder"
            )
    return manifest
