"""Shared fixtures: the read-only sample corpora and datasets built from them once per session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# ``datasets`` keys its cache for a local folder on the folder's name and card: give every test
# session a fresh cache so no test can read rows of an earlier session's same-named folder.
_CACHE = tempfile.mkdtemp(prefix="medground-test-cache-")
os.environ["HF_DATASETS_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

import pytest  # noqa: E402

from medground_hf.build import build  # noqa: E402

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
    """Kvasir-SEG samples built without a generator: every target, empty queries (read-only)."""
    out = tmp_path_factory.mktemp("built") / "kvasir"
    build("kvasir_seg", kvasir_dir, out, generator="none")
    return out


@pytest.fixture(scope="session")
def built_hc18(hc18_dir: Path, tmp_path_factory) -> Path:
    """HC18 samples built without a generator: every target, empty queries (read-only)."""
    out = tmp_path_factory.mktemp("built") / "hc18"
    build("hc18", hc18_dir, out, generator="none")
    return out


@pytest.fixture(scope="session")
def generated_kvasir(kvasir_dir: Path, tmp_path_factory) -> Path:
    """Kvasir-SEG samples built as `medground build` does by default: template queries,
    verification, grounding + rejected configs (read-only)."""
    out = tmp_path_factory.mktemp("generated") / "kvasir"
    build("kvasir_seg", kvasir_dir, out)
    return out


@pytest.fixture(scope="session")
def generated_hc18(hc18_dir: Path, tmp_path_factory) -> Path:
    """HC18 samples built with the default template generator and verification (read-only)."""
    out = tmp_path_factory.mktemp("generated") / "hc18"
    build("hc18", hc18_dir, out)
    return out


@pytest.fixture
def server():
    """The fake Anthropic + OpenAI-compatible server on 127.0.0.1 (``tests/fake_vlm_server.py``)."""
    from fake_vlm_server import FakeVLM

    with FakeVLM() as fake:
        yield fake


# ---- evaluation and viewer ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def built_mixed(built_kvasir: Path, built_hc18: Path, tmp_path_factory) -> Path:
    """One folder holding both sample builds (two sources, modalities and labels), made by
    concatenating their ``grounding`` shards per split and their manifests' sources."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from medground_hf.folder import config_splits, read_manifest, write_manifest

    out = tmp_path_factory.mktemp("built") / "mixed"
    (out / "grounding").mkdir(parents=True)
    parts = (built_kvasir, built_hc18)
    splits = {s for folder in parts for s in config_splits(folder)["grounding"]}
    for split in splits:
        tables = [
            pq.read_table(path)
            for folder in parts
            for path in sorted((folder / "grounding").glob(f"{split}-*.parquet"))
        ]
        pq.write_table(
            pa.concat_tables(tables), out / "grounding" / f"{split}-00000-of-00001.parquet"
        )
    manifests = [read_manifest(folder) for folder in parts]
    merged = json.loads(json.dumps(manifests[0]))
    for key in ("sources", "builds"):
        merged[key] = [entry for m in manifests for entry in m[key]]
    write_manifest(out, merged)
    return out


def dialect_answer(dialect: str, box, width: int, height: int, query: str, label: str) -> str:
    """A model answer in ``dialect`` exactly as the README's dialect table writes it, via
    ``boxes``."""
    import json

    from medground_hf import boxes

    if dialect == "llava":
        return "[" + ", ".join(f"{v:.3f}" for v in boxes.to_norm(box, width, height)) + "]"
    if dialect == "florence-2":
        return query + boxes.to_florence(box, width, height)
    if dialect == "ms-swift":
        return "[" + ", ".join(str(int(v)) for v in box) + "]"
    if dialect == "qwen2.5-vl":
        coords = boxes.to_qwen25(box, width, height)
    else:
        coords = boxes.to_norm1000(box, width, height)
    x1, y1, x2, y2 = coords
    if dialect in ("sharegpt", "trl"):
        return f"[{x1}, {y1}, {x2}, {y2}]"
    if dialect == "qwen2-vl":
        return (
            f"<|object_ref_start|>{query}<|object_ref_end|>"
            f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
        )
    if dialect in ("qwen2.5-vl", "qwen3-vl"):
        payload = json.dumps([{"bbox_2d": coords, "label": label}])
        return f"```json\n{payload}\n```"
    if dialect == "internvl":
        return f"<ref>{query}</ref><box>[[{x1}, {y1}, {x2}, {y2}]]</box>"
    raise KeyError(dialect)


@pytest.fixture(scope="session")
def write_dialect_answer():
    """:func:`dialect_answer`, as a fixture so test modules need not import conftest."""
    return dialect_answer


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
    manifest["derived_configs"] = ["all"]  # the format tests read every dialect's config
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


@pytest.fixture(scope="session")
def built_brats(brats_dir: Path, tmp_path_factory) -> Path:
    """A dataset folder built from the BraTS samples, default slice policy, every derived
    config (treat as read-only)."""
    out = tmp_path_factory.mktemp("built") / "brats"
    build("brats", brats_dir, out, derived_configs=["all"])
    return out


@pytest.fixture(scope="session")
def brats_whole_tumour(brats_dir: Path, tmp_path_factory) -> Path:
    """The BraTS samples built with ``--config-name whole_tumour``: one region per slice that
    overlaps the per-label regions of the default build (treat as read-only)."""
    out = tmp_path_factory.mktemp("built") / "brats_whole_tumour"
    build("brats", brats_dir, out, config_name="whole_tumour")
    return out


@pytest.fixture(scope="session")
def merged_kvasir_brats(generated_kvasir: Path, built_brats: Path, tmp_path_factory) -> Path:
    """``medground merge`` of the Kvasir-SEG and BraTS sample builds: two sources, licences
    cc-by-4.0 and cc-by-nc-sa-3.0, 2D frames and volume slices, a ``rejected`` config
    (treat as read-only)."""
    from medground_hf.merge import merge

    out = tmp_path_factory.mktemp("merged") / "kvasir_brats"
    merge([generated_kvasir, built_brats], out)
    return out


@pytest.fixture(scope="session")
def object_store(kvasir_dir: Path, brats_dir: Path):
    """A real S3-compatible server on 127.0.0.1 holding the Kvasir-SEG and BraTS samples
    (``tests/object_store.py``); the AWS variables point this process and its children at it."""
    from object_store import start

    saved = dict(os.environ)
    server, store = start({"kvasir": kvasir_dir, "brats": brats_dir})
    yield store
    server.stop()
    os.environ.clear()
    os.environ.update(saved)
