"""Build a source without a generator and read its grounding rows back as plain dicts (image
bytes undecoded), for tests that compare two builds record by record."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from medground_hf.build import build


def rows(out: Path) -> list[dict]:
    return [
        row
        for shard in sorted((out / "grounding").glob("*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]


def build_rows(source: str, data: Path, out: Path, **options) -> list[dict]:
    """Every target of ``source`` (no generator, so none rejected), no derived configs."""
    build(source, data, out, generator="none", derived_configs=[], options=options)
    return rows(out)
