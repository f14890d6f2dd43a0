"""What a worker does with one chunk, whichever engine runs it (in process, a local worker
process, a Ray task): make its records with the source's builder, then generate and verify its
queries. Results go to the work folder; the small summary returned goes to the driver.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from .chunks import Chunk
from .errors import SkipReport
from .staging import fault

if TYPE_CHECKING:
    import pyarrow as pa

RECORDS, VERIFIED = "records", "verified"


@dataclass(frozen=True)
class BuilderSpec:
    """Everything needed to make the same builder in any process (options as JSON, hashable)."""

    source: str
    data_dir: str
    config_name: str | None = None
    on_error: str = "raise"
    options: str = "{}"
    run: str = ""  # one per build: a process never reuses a builder (and its caches) of another

    def builder(self):
        return _builder(self)

    def listed_builder(self):
        """The builder, having listed the corpus once in this process: some builders keep what
        the listing found (e.g. the DICOM series of each study) for ``load_item``. The driver's
        builder is listed already; a worker process lists once, for all its chunks."""
        builder = self.builder()
        if not getattr(builder, "medground_listed", False):
            builder.split_items()
            builder.medground_listed = True
        return builder


@cache
def _builder(spec: BuilderSpec):
    """One builder per spec and process: listing options are parsed and checked once."""
    import tempfile

    from .builders import get_builder_class

    cls = get_builder_class(spec.source)
    return cls(
        config_name=spec.config_name,
        data_dir=spec.data_dir,
        cache_dir=tempfile.mkdtemp(prefix="medground-builder-"),
        on_error=spec.on_error,
        **json.loads(spec.options),
    )


def structure_names(table: pa.Table) -> set[str]:
    """Every structure a relation of these records names (adjacent, inside, contains)."""
    import pyarrow.compute as pc

    names: set[str] = set()
    relations = table.column("relations")
    for kind in ("inside", "adjacent_to", "contains"):
        values = pc.list_flatten(pc.struct_field(relations.combine_chunks(), kind))
        names.update(v for v in values.to_pylist() if v)
    return names


def split_counts(table: pa.Table) -> dict:
    """Records, images, cases and labels of a chunk's records, and the bytes of its images."""
    import pyarrow as pa
    import pyarrow.compute as pc

    light = table.select(["image_id", "case_id", "label"]).to_pydict()
    first = {}
    for row, image in enumerate(light["image_id"]):
        first.setdefault(image, row)
    sizes = pc.binary_length(pc.struct_field(table.column("image").combine_chunks(), "bytes"))
    return {
        "records": table.num_rows,
        "images": len(first),
        "cases": len(set(light["case_id"])),
        "labels": dict(sorted(Counter(light["label"]).items())),
        "image_bytes": int(
            pc.sum(sizes.take(pa.array(list(first.values()), pa.int64()))).as_py() or 0
        ),
    }


def make_records(spec: BuilderSpec, work: str, chunk: Chunk) -> dict:
    """Records of a chunk's items into the work folder; returns the chunk's summary."""
    import pyarrow as pa

    from .record import record_schema
    from .workdir import WorkDir

    builder = spec.listed_builder()
    report = SkipReport(None)
    records, built = [], 0
    for item in chunk.items:
        made, _ = builder.item_records(item, chunk.split, report)
        built += bool(made)
        records.extend(made)
        fault("item")
    table = pa.Table.from_pylist(records, schema=record_schema())
    summary = {
        "chunk": chunk.name,
        "identity": chunk.identity(),
        "split": chunk.split,
        "items_read": len(chunk.items),
        "items_built": built,
        "skipped": report.entries,
        "structures": sorted(structure_names(table)),
        "counts": split_counts(table),
    }
    store = WorkDir(work)
    store.write_table(RECORDS, chunk.name, table)
    store.write_json(RECORDS, chunk.name, summary)
    return summary


@dataclass
class Verification:
    """What :func:`verify_records` needs besides the chunk: generation options, label specs of
    the source and the structure names of the whole corpus."""

    options: dict
    sources: list[dict]
    structures: list[str] = field(default_factory=list)


_WORKERS: dict[str, tuple] = {}


def _workers(options_json: str) -> tuple:
    """One generator (and judge) per process and options: VLM clients, caches and connections
    are reused across the chunks a worker runs."""
    if options_json not in _WORKERS:
        from .generation.commands import GenerationOptions, make_generator, make_judge

        options = GenerationOptions(**json.loads(options_json))
        _WORKERS[options_json] = (options, make_generator(options), make_judge(options))
    return _WORKERS[options_json]


def close_workers() -> None:
    """Close this process's generators and judges (at the end of an in-process build)."""
    for _, generator, judge in _WORKERS.values():
        generator.close()
        if judge is not None:
            judge.close()
    _WORKERS.clear()


def verify_records(job: Verification, work: str, task: tuple[str, str]) -> dict:
    """Generate and verify one chunk's records (``task``: its name and identity); kept and
    rejected rows to the work folder."""
    from .generation import pipeline
    from .generation.base import Usage
    from .workdir import WorkDir

    name, identity = task
    store = WorkDir(work)
    table = store.read_table(RECORDS, name)
    options, generator, judge = _workers(json.dumps(job.options, sort_keys=True))
    before = Usage()
    before.add(generator.usage)
    if judge is not None:
        before.add(judge.usage)
    batch_size = 256 if options.generator == "template" else max(64, 32 * options.concurrency)
    split = name.rsplit("-", 1)[0]
    outcome = pipeline.run(
        {split: table},
        pipeline.labels_of(job.sources),
        generator,
        judge,
        batch_size=batch_size,
        structures=job.structures,
        progress=False,  # the build draws one bar for all chunks
    )
    spent = outcome.verification["usage"]
    outcome.verification["usage"] = {k: v - getattr(before, k) for k, v in spent.items()}
    for config, parts in (("grounding", outcome.grounding), ("rejected", outcome.rejected)):
        rows = parts.get(split)
        if rows is not None and rows.num_rows:
            store.write_table(VERIFIED, f"{name}.{config}", rows)
    summary = {"chunk": name, "identity": identity, "verification": outcome.verification}
    store.write_json(VERIFIED, name, summary)
    return summary
