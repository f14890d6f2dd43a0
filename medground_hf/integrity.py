"""The one check every reader of a built folder runs: its shards must match its manifest.

The manifest lists every Parquet shard with its size, row count and sha256 (written with it, see
:func:`medground_hf.folder.write_manifest`). :func:`check_folder` refuses a folder whose shards do
not match, naming the file: a shard truncated or edited after the build, one left over by an
interrupted run of an older version, one missing. ``publish``, ``merge``, ``export``, ``view``,
``eval``, ``generate`` and ``verify`` call it before reading anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from . import storage
from .folder import FILES, MANIFEST, parquet_rows, read_manifest, sha256_of, shard_paths
from .staging import INCOMING_SUFFIX, RemoteFolder, recover


class FolderMismatch(ValueError):
    """A folder's files do not match its manifest; the message names the file."""


def check_folder(out: str | Path, configs: Iterable[str] | None = None) -> dict:
    """Refuse a folder whose shards differ from its manifest; returns the manifest.

    ``configs`` limits the check to those configs (e.g. a Hub download of ``grounding`` only).
    """
    remote = storage.is_url(out)
    out = storage.path(out)
    if remote:
        manifest = _remote_manifest(str(out))
    else:
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

    for rel in _remote_shards(out) if remote else shard_paths(out):
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
        rows = _remote_rows(path) if remote else parquet_rows(path)
        if rows != expected["rows"]:
            raise FolderMismatch(f"{path}: {rows} rows where {MANIFEST} says {expected['rows']}")
        if (_remote_sha256(path) if remote else sha256_of(path)) != expected["sha256"]:
            raise FolderMismatch(
                f"{path}: content differs from the sha256 in {MANIFEST} (modified after the "
                "build): rebuild the folder"
            )
    return manifest


# ---- a folder at a URL (read through fsspec; see medground_hf.staging.RemoteFolder) -------------
def _remote_manifest(url: str) -> dict:
    """The manifest of a folder at a URL; a folder without one is incomplete (an upload or a
    swap in progress, or interrupted: its writer's rerun finishes it, readers never do)."""
    folder = RemoteFolder(url)
    folder.fs.invalidate_cache()  # listings this process made earlier may be stale
    manifest = folder.read_manifest()
    if manifest is not None:
        return manifest
    if folder.incoming_complete():
        raise FolderMismatch(
            f"{url}: being replaced ({MANIFEST} removed, the new folder waits in "
            f"{url}{INCOMING_SUFFIX}): rerun the command that writes it to finish the swap"
        )
    raise FolderMismatch(f"{url}: not a medground dataset folder ({MANIFEST} missing)")


def _remote_shards(out) -> list[str]:
    with storage.errors(out, "cannot list"):
        return shard_paths(out)


def _remote_rows(path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with storage.errors(path, "cannot read"), path.open("rb") as fh:
        try:
            return pq.ParquetFile(fh).metadata.num_rows
        except pa.ArrowInvalid as exc:  # not the store's failure: a damaged shard
            raise FolderMismatch(f"{path}: unreadable Parquet shard: {exc}") from exc


def _remote_sha256(path) -> str:
    digest = hashlib.sha256()
    with storage.errors(path, "cannot read"), path.open("rb") as fh:
        while block := fh.read(4 * 2**20):
            digest.update(block)
    return digest.hexdigest()
