"""Shared fixtures: the read-only sample corpora and datasets built from them once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medground_hf.build import build

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDGROUND_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"sample data not found at {SHARED_DATA} (set MEDGROUND_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kvasir_dir(shared_data: Path) -> Path:
    return shared_data / "kvasir_seg"


@pytest.fixture(scope="session")
def hc18_dir(shared_data: Path) -> Path:
    return shared_data / "hc18"


@pytest.fixture(scope="session")
def brats_dir(shared_data: Path) -> Path:
    return shared_data / "brats2013"


@pytest.fixture(scope="session")
def built_kvasir(kvasir_dir: Path, tmp_path_factory) -> Path:
    """A dataset folder built from the Kvasir-SEG samples (treat as read-only)."""
    out = tmp_path_factory.mktemp("built") / "kvasir"
    build("kvasir_seg", kvasir_dir, out)
    return out


@pytest.fixture(scope="session")
def built_hc18(hc18_dir: Path, tmp_path_factory) -> Path:
    """A dataset folder built from the HC18 samples (treat as read-only)."""
    out = tmp_path_factory.mktemp("built") / "hc18"
    build("hc18", hc18_dir, out)
    return out


# ---- formats: built folders whose grounding rows carry kept queries ------------------------------
def _simple_queries(row: dict, index: int) -> list[dict]:
    """Two kept queries worded from the row's cues and one rejected; every 7th row has none."""
    if index % 7 == 3:
        return []
    label = row["label_display"]
    texts = [
        (f"the {label} in the {row['spatial']['grid_cell']} of the image", True),
        (f"the {row['shape']['size_category']} {label}", True),
        (f"the {label} at the top left corner", False),
    ]
    return [
        {
            "text": text,
            "style": "test",
            "generator": "test-fixture",
            "model": None,
            "prompt_version": "test",
            "kept": kept,
            "verdicts": [
                {"stage": "format", "check": "fixture", "passed": kept, "reason": "test fixture"}
            ],
        }
        for text, kept in texts
    ]


def with_queries(built: Path, dst: Path) -> Path:
    """Copy a built folder, add simple queries to its grounding rows, rewrite derived configs."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from medground_hf.build import write_card
    from medground_hf.folder import read_manifest, write_manifest
    from medground_hf.formats import write_format_configs

    shutil.copytree(built, dst)
    for shard in sorted((dst / "grounding").glob("*.parquet")):
        table = pq.read_table(shard)
        rows = table.select(["label_display", "spatial", "shape"]).to_pylist()
        column = table.schema.get_field_index("queries")
        queries = pa.array(
            [_simple_queries(row, i) for i, row in enumerate(rows)],
            type=table.schema.field(column).type,
        )
        pq.write_table(table.set_column(column, "queries", queries), shard)
    manifest = read_manifest(dst)
    manifest["formats"] = write_format_configs(dst, manifest)
    write_manifest(dst, manifest)
    write_card(dst, manifest)
    return dst


@pytest.fixture(scope="session")
def kvasir_queries(built_kvasir: Path, tmp_path_factory) -> Path:
    """``built_kvasir`` with simple kept queries on most targets (treat as read-only)."""
    return with_queries(built_kvasir, tmp_path_factory.mktemp("queries") / "kvasir")


@pytest.fixture(scope="session")
def hc18_queries(built_hc18: Path, tmp_path_factory) -> Path:
    """``built_hc18`` with simple kept queries on most targets (treat as read-only)."""
    return with_queries(built_hc18, tmp_path_factory.mktemp("queries") / "hc18")
