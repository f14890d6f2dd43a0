"""``medground build``: list a source's items, make records and queries chunk by chunk on an
engine, and write a loadable dataset folder.

builder listing (on the driver, once) -> chunks -> records per chunk (workers) -> generation and
verification per chunk (workers) -> Parquet shards of ``grounding`` and ``rejected`` -> derived
configs, manifest, card, all in the staging folder (:mod:`medground_hf.staging`) that then
replaces ``out`` in one rename. Chunks are checkpoints: a killed build, run again, redoes only
the chunks it had not finished (see :mod:`medground_hf.workdir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from . import PIPELINE_VERSION, storage
from .chunks import Chunk, plan_chunks, shard_chunks
from .engine import check_engine, make_engine
from .errors import BuildError, InputError, read_skips, sort_skips
from .formats.names import check_selection
from .progress import quiet_datasets
from .source import SourceInfo
from .splits import split_key
from .stages import RECORDS, VERIFIED, BuilderSpec, Verification, make_records, verify_records
from .staging import RemoteFolder, command_key, fault, is_empty, local_target, recover, staged

if TYPE_CHECKING:
    from .workdir import WorkDir

# Arrow, the builders (``datasets``), the stages and the writers are imported where a build
# needs them, after its inputs are checked: an error or ``--help`` stays fast.
logger = logging.getLogger("medground_hf")
SHARD_CONFIGS = ("grounding", "rejected")


def source_metadata(source: SourceInfo) -> dict:
    meta = asdict(source)
    meta["labels"] = [asdict(label) for label in source.labels]
    return meta


COMMAND_KEY = "command_key"  # manifest key: which command (and options) wrote the folder


def already_done(
    out: Path | str, key: str, overwrite: bool, work_dir: str | Path | None = None
) -> dict | None:
    """The manifest of ``out`` when the same command already wrote it completely (nothing to
    do); None when it is to be written. A non-empty folder written otherwise needs
    ``overwrite``. A URL ``out`` (a string) gets a swap a killed run left half done finished
    first (:class:`~medground_hf.staging.RemoteFolder`)."""
    from .folder import MANIFEST, read_manifest
    from .integrity import check_folder

    if isinstance(out, str):
        return _already_at_url(out, key, overwrite, work_dir)
    recover(out)
    if overwrite or is_empty(out):
        return None
    if (out / MANIFEST).is_file() and read_manifest(out).get(COMMAND_KEY) == key:
        manifest = check_folder(out)
        logger.info("%s: already written by this same command (--overwrite rebuilds it)", out)
        return manifest
    raise BuildError(f"{out}: output folder is not empty (use --overwrite to replace it)")


def _already_at_url(url: str, key: str, overwrite: bool, work_dir) -> dict | None:
    from .integrity import check_folder

    remote = RemoteFolder(url)
    remote.check_writable()
    finished = remote.recover()  # the swap of a killed run: of this command, it is done
    if remote.is_empty() or (overwrite and not finished):
        return None
    if (remote.read_manifest() or {}).get(COMMAND_KEY) == key:
        manifest = check_folder(url)
        shutil.rmtree(local_target(url, work_dir).parent, ignore_errors=True)  # a leftover
        logger.info("%s: already written by this same command (--overwrite rebuilds it)", url)
        return manifest
    raise BuildError(f"{url}: output folder is not empty (use --overwrite to replace it)")


def check_data_dir(data_dir: str | Path) -> None:
    """A local data dir that is not there is refused before anything is loaded or staged (the
    builder checks what it holds; a URL is the builder's to check)."""
    if not storage.is_url(data_dir) and not Path(data_dir).expanduser().is_dir():
        raise InputError(Path(data_dir), "data dir does not exist or is not a folder")


def builder_class(source: str) -> type:
    """The builder of ``source``; an unknown name is a one-line error listing the known ones."""
    from .builders import REGISTRY, get_builder_class

    if source not in REGISTRY:
        raise BuildError(
            f"unknown source {source!r} (known: {', '.join(sorted(REGISTRY))}; "
            "see `medground sources`)"
        )
    return get_builder_class(source)


# config fields set by the pipeline or by their own flags (--on-error, --split-ratios), not --set
_NOT_OPTIONS = {"name", "version", "data_dir", "data_files", "description", "report_dir"} | {
    "on_error",
    "split_ratios",
}


def check_options(source: str, cls: type, options: Mapping[str, object]) -> None:
    """Refuse builder options the source does not have, naming them and the ones it has."""
    known = {f.name for f in fields(cls.BUILDER_CONFIG_CLASS)} - _NOT_OPTIONS
    unknown = sorted(set(options) - known)
    if unknown:
        raise BuildError(
            f"{source}: unknown builder option(s) {', '.join(unknown)} "
            f"(options: {', '.join(sorted(known))})"
        )


def make_builder(spec: BuilderSpec):
    try:
        return spec.builder()
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise BuildError(f"{spec.source}: bad builder options: {exc}") from exc


def chunk_hash(chunks: Sequence[Chunk]) -> str:
    """One hash of the whole listing: which items, in which chunks."""
    keys = [[c.name, [item.key for item in c.items]] for c in chunks]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def _pending(work: WorkDir, stage: str, chunks: Sequence[Chunk]) -> list[Chunk]:
    """The chunks ``stage`` has not finished on these very items (all, unless resuming)."""
    todo = [
        c for c in chunks if (work.read_json(stage, c.name) or {}).get("identity") != c.identity()
    ]
    if len(todo) < len(chunks):
        logger.info("%s: %d of %d chunks already done", stage, len(chunks) - len(todo), len(chunks))
    return todo


def make_all_records(engine, spec: BuilderSpec, work: WorkDir, chunks: Sequence[Chunk]) -> list:
    todo = _pending(work, RECORDS, chunks)
    if len(todo) < len(chunks):
        for split in dict.fromkeys(c.split for c in chunks):
            items = sum(len(c.items) for c in chunks if c.split == split)
            read = sum(len(c.items) for c in todo if c.split == split)
            logger.info(
                "split %s: %d item(s) taken from the interrupted run, %d read",
                split,
                items - read,
                read,
            )
    engine.map(
        partial(make_records, spec, str(work.root)),
        todo,
        desc="items",
        weights=[len(c.items) for c in todo],
        unit="item",
    )
    return [work.read_json(RECORDS, c.name) for c in chunks]


def verify_all(engine, job: Verification, work: WorkDir, chunks: Sequence[Chunk]) -> list:
    made = [c for c in chunks if work.has_table(RECORDS, c.name)]
    todo = _pending(work, VERIFIED, made)
    engine.map(
        partial(verify_records, job, str(work.root)),
        [(c.name, c.identity()) for c in todo],
        desc="generate+verify",
        weights=[work.read_json(RECORDS, c.name)["counts"]["records"] for c in todo],
        unit="target",
    )
    return [work.read_json(VERIFIED, c.name) for c in made]


def combine_counts(summaries: Sequence[dict]) -> dict:
    """The manifest's counts from chunk summaries (or from the counts of several folders)."""
    splits: dict[str, dict] = {}
    for s in summaries:
        into = splits.setdefault(
            s["split"], {"records": 0, "images": 0, "cases": 0, "labels": {}, "image_bytes": 0}
        )
        for key in ("records", "images", "cases", "image_bytes"):
            into[key] += s["counts"].get(key, 0)
        into["labels"] = dict(
            sorted((Counter(into["labels"]) + Counter(s["counts"]["labels"])).items())
        )
    return {
        split: c
        for split, c in sorted(splits.items(), key=lambda kv: split_key(kv[0]))
        if c["records"]
    }


def write_shards(engine, out: Path, work: WorkDir, chunks: Sequence[Chunk], stage: str) -> dict:
    """``grounding`` and ``rejected`` shards from the chunks' tables, in chunk order; consecutive
    chunks are grouped into shards of at most ~500 MB, each shard written by one task. Returns
    the shards' manifest records by relative path."""
    from .folder import MAX_SHARD_BYTES, shard_name

    tasks = []
    for config in SHARD_CONFIGS:
        table_name = (
            (lambda c: c.name) if stage == RECORDS else (lambda c, k=config: f"{c.name}.{k}")
        )
        if stage == RECORDS and config != "grounding":
            continue
        for split in dict.fromkeys(c.split for c in chunks):
            parts = [
                table_name(c)
                for c in chunks
                if c.split == split and work.has_table(stage, table_name(c))
            ]
            groups: list[list[str]] = []
            size = 0
            for name in parts:
                bytes_ = work.path(stage, name, ".arrow").stat().st_size
                if not groups or size + bytes_ > MAX_SHARD_BYTES:
                    groups.append([])
                    size = 0
                groups[-1].append(name)
                size += bytes_
            tasks += [
                (config, shard_name(split, i, len(groups)), stage, names)
                for i, names in enumerate(groups)
            ]
    records = engine.map(partial(_write_shard, str(out), str(work.root)), tasks, desc=None)
    return {f"{task[0]}/{task[1]}": record for task, record in zip(tasks, records, strict=True)}


def _write_shard(out: str, work: str, task: tuple) -> dict:
    from .folder import write_shard
    from .generation.pipeline import rejected_schema
    from .record import record_schema
    from .workdir import WorkDir

    config, name, stage, parts = task
    store = WorkDir(work)
    schema = record_schema() if config == "grounding" else rejected_schema()
    batches = (
        batch
        for part in parts
        for batch in store.read_table(stage, part).select(schema.names).to_batches(256)
    )
    return write_shard(Path(out) / config / name, schema, batches)


def build(
    source: str,
    data_dir: str | Path,
    out: str | Path,
    *,
    config_name: str | None = None,
    on_error: str = "raise",
    split_ratios: Mapping[str, float] | None = None,
    num_proc: int | None = None,
    options: Mapping[str, object] | None = None,
    overwrite: bool = False,
    generator: str = "template",
    generation_options: Mapping[str, object] | None = None,
    derived_configs: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    work_dir: str | Path | None = None,
) -> dict:
    """Build ``source`` from ``data_dir`` into the folder ``out``; returns the manifest.

    ``generator`` writes the queries (``"none"`` leaves them empty) and the verification stages
    split targets into the ``grounding`` and ``rejected`` configs; ``generation_options`` are
    further :class:`~medground_hf.generation.commands.GenerationOptions` fields. ``shard``
    ``(i, n)`` builds the i-th of n parts of the corpus, for ``medground merge`` to join.
    ``engine`` runs the work in local processes (``num_proc`` of them) or on Ray; neither
    changes the result. ``out`` may be an fsspec URL: the folder is built under ``work_dir``
    (a local or shared folder), then uploaded and swapped in (see
    :class:`~medground_hf.staging.RemoteFolder`).
    """
    selection = check_selection(list(derived_configs)) if derived_configs is not None else None
    remote = storage.is_url(out)
    out = storage.location(out) if remote else Path(storage.location(out))
    if work_dir is not None and not remote:
        raise BuildError(
            "--work-dir is for a URL --out (a local --out is staged beside itself, so that "
            "the new folder takes the old one's place in one rename)"
        )
    check_data_dir(data_dir)
    check_engine(engine, ray_address)
    cls = builder_class(source)
    check_options(source, cls, options or {})
    key = command_key(
        "build",
        {
            "source": source,
            "data_dir": storage.normalise(data_dir),
            "config_name": config_name,
            "on_error": on_error,
            "split_ratios": dict(split_ratios or {}),
            "options": dict(options or {}),
            "generator": generator,
            "generation": generation_identity(generator, generation_options),
            "derived_configs": selection,
            "shard": list(shard) if shard else None,
            "pipeline_version": PIPELINE_VERSION,
        },
    )
    done = already_done(out, key, overwrite, work_dir)
    if done is not None:
        return done
    builder_options = dict(options or {})
    if split_ratios:
        builder_options["split_ratios"] = dict(split_ratios)
    spec = BuilderSpec(
        source,
        storage.location(data_dir),
        config_name,
        on_error,
        json.dumps(builder_options),
        run=uuid.uuid4().hex,
    )
    gen_options = None
    if generator != "none":
        from .generation.commands import GenerationOptions

        chosen = GenerationOptions(generator=generator, **dict(generation_options or {}))
        gen_options = asdict(chosen)
    from .workdir import WorkDir

    with quiet_datasets(), staged(out, key, work_dir) as stage:
        # the driver lists the items; what the listing skips (e.g. an unreadable file found
        # while scanning) is reported to the skip folder and joins the workers' skips
        builder = make_builder(spec)
        builder.config.report_dir = str(stage.scratch / "skips")
        chunks = plan_chunks(builder.split_items())
        builder.medground_listed = True  # in-process chunks reuse this listing
        all_items = sum(len(c.items) for c in chunks)
        listing = chunk_hash(chunks)  # the whole corpus: the shards of one build share it
        if shard is not None:
            chunks = shard_chunks(chunks, *shard)
        work = WorkDir(stage.resume / "chunks")
        runner = make_engine(engine, num_proc, ray_address)
        try:
            if remote and work_dir is None and getattr(runner, "nodes", 1) > 1:
                raise BuildError(
                    f"{out}: a Ray cluster of several machines needs --work-dir on storage "
                    "every node mounts at the same path (workers write the staging folder there)"
                )
            summaries = make_all_records(runner, spec, work, chunks)
            fault("records")
            listed = read_skips(stage.scratch / "skips")
            skips = sort_skips(listed + [s for summary in summaries for s in summary["skipped"]])
            items_read = sum(s["items_read"] for s in summaries)
            built_items = sum(s["items_built"] for s in summaries)
            skipped_items = [s for s in skips if s["stage"] == "input"]
            if items_read != built_items + len(skipped_items):
                raise BuildError(
                    f"counts do not add up: read {items_read}, built {built_items}, "
                    f"skipped {len(skipped_items)}"
                )
            verification = None
            kind = RECORDS
            if gen_options is not None:
                from .generation.pipeline import combine

                options, merge_cache = shared_cache(
                    gen_options, engine, stage.resume, getattr(runner, "nodes", 1)
                )
                job = Verification(
                    options,
                    [source_metadata(builder.source)],
                    sorted({n for s in summaries for n in s["structures"]}),
                )
                parts = verify_all(runner, job, work, chunks)
                if merge_cache is not None:
                    from .generation.cache import merge_into

                    count = merge_into(options["cache"], merge_cache)
                    logger.info(
                        "%d answer(s) of the workers' cache added to %s", count, merge_cache
                    )
                verification = combine(s["verification"] for s in parts)
                kind = VERIFIED
            written = write_shards(runner, stage.path, work, chunks, kind)
            fault("shards")
            counts = combine_counts(summaries)
            manifest = {
                "pipeline_version": PIPELINE_VERSION,
                "sources": [source_metadata(builder.source)],
                "builds": [
                    {
                        "source": builder.source.name,
                        "builder": builder.name,
                        "builder_version": str(builder.VERSION),
                        "config": builder.config.name,
                        "split_ratios": dict(builder.config.split_ratios),
                        "on_error": on_error,
                    }
                ],
                "counts": {
                    "items_read": items_read,
                    "items_built": built_items,
                    "items_skipped": len(skipped_items),
                    "components_dropped": sum(1 for s in skips if s["stage"] == "min_size"),
                    "image_bytes": sum(c["image_bytes"] for c in counts.values()),
                    "splits": {
                        split: {k: v for k, v in c.items() if k != "image_bytes"}
                        for split, c in counts.items()
                    },
                },
                "skipped": skips,
                COMMAND_KEY: key,
            }
            if shard is not None:
                manifest["shard"] = {
                    "index": shard[0],
                    "count": shard[1],
                    "items_total": all_items,
                    "listing": listing,
                }
            if verification is not None:
                manifest["verification"] = verification
            if selection is not None:
                manifest["derived_configs"] = selection
            finish_folder(stage.path, manifest, runner, written)
        finally:
            runner.close()
    return manifest


def shared_cache(
    options: dict, engine: str, resume: Path, nodes: int = 1
) -> tuple[dict, Path | None]:
    """The request cache a build's workers use. On Ray they may run on several machines, which
    share no SQLite file: unless the user chose a folder cache, answers go to a folder cache in
    the staging folder (kept when a killed build resumes) and are added to the user's SQLite
    cache at the end; workers read that SQLite cache too before asking, so answers paid by an
    earlier run are not paid again. Only the driver's machine holds it, so a cluster of several
    machines needs a folder cache on shared storage. Returns the options and that SQLite path
    (None: nothing to add)."""
    from .generation.commands import GenerationOptions

    chosen = options.get("cache")
    if engine != "ray" or (options["generator"] == "template" and options["judge"] == "offline"):
        return options, None
    if chosen and (str(chosen).endswith("/") or Path(chosen).is_dir()):
        return options, None
    sqlite = GenerationOptions(**options).cache_path()
    if nodes > 1:
        raise BuildError(
            f"a Ray cluster of {nodes} machines cannot share the SQLite request cache {sqlite}: "
            "give --cache a folder on storage every node mounts (a path ending in /), so no "
            "answer is paid for twice"
        )
    folder = resume / "requests"
    folder.mkdir(parents=True, exist_ok=True)
    return {**options, "cache": f"{folder}/", "read_cache": str(sqlite)}, sqlite


def generation_identity(generator: str, options: Mapping[str, object] | None) -> dict | None:
    """The generation options that decide the records (not concurrency, timeouts, the cache)."""
    if generator == "none":
        return None
    from .generation.commands import GenerationOptions

    return GenerationOptions(generator=generator, **dict(options or {})).identity()


def finish_folder(
    out: Path, manifest: dict, engine=None, written: Mapping[str, dict] | None = None
) -> None:
    """The last step of every command that writes a folder (build, generate, merge, into its
    staging folder): derived configs rewritten from ``grounding`` (none, and stale ones gone,
    when every target was rejected; on ``engine``'s workers when given), then the manifest (with
    every shard's hash) and the card. ``written``: the manifest records of the shards the
    command has just written (hashed as they were written, so not read again)."""
    from .folder import write_manifest
    from .formats.configs import remove_format_configs, write_format_configs

    written = dict(written or {})
    if (out / "grounding").is_dir():
        manifest["formats"] = write_format_configs(out, manifest, engine, written)
    else:
        remove_format_configs(out)
        manifest.pop("formats", None)
    fault("formats")
    write_manifest(out, manifest, written)
    fault("manifest")
    write_card(out, manifest)


def write_card(out: Path, manifest: dict | None = None) -> None:
    from .dataset_card import render_card
    from .folder import read_manifest

    (out / "README.md").write_text(render_card(out, manifest or read_manifest(out)), "utf-8")
