"""``medground build``: run a source builder and write a loadable dataset folder.

builder (``download_and_prepare`` into a scratch Arrow cache) -> canonical records per split ->
Parquet shards + manifest + card. Generation and verification plug in between records and shards.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from datasets import Dataset
from datasets.exceptions import DatasetGenerationError

from . import PIPELINE_VERSION
from .errors import InputError, read_skips
from .folder import MANIFEST, read_manifest, split_key, write_manifest, write_split
from .formats import remove_format_configs, write_format_configs
from .formats.configs import check_selection
from .integrity import check_folder
from .progress import quiet_datasets
from .source import SourceInfo
from .staging import command_key, fault, is_empty, recover, staged

logger = logging.getLogger("medground_hf")


class BuildError(RuntimeError):
    """The build cannot go on; the message says why (and which file, for input errors)."""


def _unwrap(error: BaseException) -> BaseException:
    """``datasets`` wraps generator errors; surface the InputError that names the file (or the
    OSError, e.g. a full disk)."""
    seen = error
    while seen is not None:
        if isinstance(seen, (InputError, OSError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return error


def source_metadata(source: SourceInfo) -> dict:
    meta = asdict(source)
    meta["labels"] = [asdict(label) for label in source.labels]
    return meta


COMMAND_KEY = "command_key"  # manifest key: which command (and options) wrote the folder


def already_done(out: Path, key: str, overwrite: bool) -> dict | None:
    """The manifest of ``out`` when the same command already wrote it completely (nothing to
    do); None when it is to be written. A non-empty folder written otherwise needs
    ``overwrite``."""
    recover(out)
    if overwrite or is_empty(out):
        return None
    if (out / MANIFEST).is_file() and read_manifest(out).get(COMMAND_KEY) == key:
        manifest = check_folder(out)
        logger.info("%s: already written by this same command (--overwrite rebuilds it)", out)
        return manifest
    raise BuildError(f"{out}: output folder is not empty (use --overwrite to replace it)")


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


def run_builder(
    source: str,
    data_dir: Path,
    work: Path,
    *,
    config_name: str | None = None,
    on_error: str = "raise",
    split_ratios: Mapping[str, float] | None = None,
    num_proc: int | None = None,
    options: Mapping[str, object] | None = None,
    checkpoints: Path | None = None,
):
    """Run one builder into ``work``; returns it and its datasets per split. Finished items are
    checkpointed in ``checkpoints`` (and taken from there when a rerun resumes)."""
    cls = builder_class(source)
    check_options(source, cls, options or {})
    kwargs = dict(options or {})
    if split_ratios:
        kwargs["split_ratios"] = dict(split_ratios)
    if checkpoints is not None:
        kwargs["checkpoint_dir"] = str(checkpoints)
    try:
        builder = cls(
            config_name=config_name,
            data_dir=str(data_dir),
            cache_dir=str(work / "cache"),
            on_error=on_error,
            report_dir=str(work / "skips"),
            **kwargs,
        )
    except (TypeError, ValueError) as exc:
        raise BuildError(f"{source}: bad builder options: {exc}") from exc
    try:
        builder.download_and_prepare(
            output_dir=str(work / "arrow"), num_proc=num_proc, verification_mode="no_checks"
        )
    except InputError:
        raise
    except DatasetGenerationError as exc:
        cause = _unwrap(exc)
        if isinstance(cause, (InputError, OSError)):
            raise cause from None
        raise
    # a split whose every item was skipped holds no data: there is nothing to load or write
    splits = {
        name: builder.as_dataset(split=name)
        for name, info in sorted((builder.info.splits or {}).items(), key=lambda s: split_key(s[0]))
        if info.num_examples
    }
    return builder, splits


def count_split(ds: Dataset) -> dict:
    cols = ds.select_columns(["image_id", "case_id", "label"]).to_dict()
    return {
        "records": len(ds),
        "images": len(set(cols["image_id"])),
        "cases": len(set(cols["case_id"])),
        "labels": dict(sorted(Counter(cols["label"]).items())),
    }


@quiet_datasets()
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
) -> dict:
    """Build ``source`` from ``data_dir`` into the folder ``out``; returns the manifest.

    ``generator`` writes the queries (``"none"`` leaves them empty) and the verification stages
    split targets into the ``grounding`` and ``rejected`` configs; ``generation_options`` are
    further :class:`~medground_hf.generation.commands.GenerationOptions` fields.
    """
    selection = check_selection(list(derived_configs)) if derived_configs is not None else None
    out = Path(out)
    key = command_key(
        "build",
        {
            "source": source,
            "data_dir": str(Path(data_dir).resolve()),
            "config_name": config_name,
            "on_error": on_error,
            "split_ratios": dict(split_ratios or {}),
            "options": dict(options or {}),
            "generator": generator,
            "generation": generation_identity(generator, generation_options),
            "derived_configs": selection,
            "pipeline_version": PIPELINE_VERSION,
        },
    )
    done = already_done(out, key, overwrite)
    if done is not None:
        return done
    with staged(out, key) as stage:
        builder, splits = run_builder(
            source,
            Path(data_dir),
            stage.scratch,
            config_name=config_name,
            on_error=on_error,
            split_ratios=split_ratios,
            num_proc=num_proc,
            options=options,
            checkpoints=stage.resume / "items",
        )
        skips = read_skips(stage.scratch / "skips")
        counts = {split: count_split(ds) for split, ds in splits.items()}
        fault("records")
        verification = write_configs(
            stage.path, builder.source, splits, generator, generation_options
        )
        fault("shards")
        items_read = sum(len(items) for items in builder.items_by_split.values())
        skipped_items = [s for s in skips if s["stage"] == "input"]
        built_items = sum(c["cases"] for c in counts.values())
        if items_read != built_items + len(skipped_items):
            raise BuildError(
                f"counts do not add up: read {items_read}, built {built_items}, "
                f"skipped {len(skipped_items)}"
            )
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
                "splits": counts,
            },
            "skipped": skips,
            COMMAND_KEY: key,
        }
        if verification is not None:
            manifest["verification"] = verification
        if selection is not None:
            manifest["derived_configs"] = selection
        finish_folder(stage.path, manifest)
    return manifest


def generation_identity(generator: str, options: Mapping[str, object] | None) -> dict | None:
    """The generation options that decide the records (not concurrency, timeouts, the cache)."""
    if generator == "none":
        return None
    from .generation.commands import GenerationOptions

    return GenerationOptions(generator=generator, **dict(options or {})).identity()


def write_configs(
    out: Path,
    source: SourceInfo,
    splits: Mapping[str, Dataset],
    generator: str,
    generation_options: Mapping[str, object] | None,
) -> dict | None:
    """Generate + verify queries, then write the grounding (and rejected) shards per split."""
    if generator == "none":
        for split, ds in splits.items():
            if len(ds):
                write_split(out, "grounding", split, ds)
        return None
    from .generation.commands import GenerationOptions, run_generation, write_outcome

    options = GenerationOptions(generator=generator, **dict(generation_options or {}))
    outcome = run_generation(splits, [source], options)
    write_outcome(out, outcome)
    return outcome.verification


def finish_folder(out: Path, manifest: dict) -> None:
    """The last step of every command that writes a folder (build, generate, merge, into its
    staging folder): derived configs rewritten from ``grounding`` (none, and stale ones gone,
    when every target was rejected), then the manifest (with every shard's hash) and the card."""
    if (out / "grounding").is_dir():
        manifest["formats"] = write_format_configs(out, manifest)
    else:
        remove_format_configs(out)
        manifest.pop("formats", None)
    fault("formats")
    write_manifest(out, manifest)
    fault("manifest")
    write_card(out, manifest)


def write_card(out: Path, manifest: dict | None = None) -> None:
    from .dataset_card import render_card

    (out / "README.md").write_text(render_card(out, manifest or read_manifest(out)), "utf-8")
