"""Render ``README.md`` for a built folder from its manifest and shard layout.

The YAML header is produced by ``huggingface_hub.DatasetCardData`` (so it is what the Hub parses)
and the body by the Jinja template ``card.md.j2``. Counts per split/source/label are read off the
``grounding`` shards (two small columns), verification pass rates off ``manifest["verification"]``.
"""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path

import jinja2
from datasets import Features, Image, LargeList, List, Value
from huggingface_hub import DatasetCardData

from medground_hf import boxes
from medground_hf.folder import configs_metadata, dataset_info_metadata, iter_rows, split_key
from medground_hf.formats.chat import DIALECTS
from medground_hf.licences import OPEN_IDS
from medground_hf.record import GROUNDING_FEATURES

SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)
TASK_CATEGORIES = ["image-text-to-text", "object-detection", "image-segmentation"]


def size_category(n: int) -> str:
    for limit, name in SIZE_BUCKETS:
        if n < limit:
            return name
    return "n>1M"


def combined_license(sources: list[dict]) -> tuple[str, list[str]]:
    """One licence id when every source shares it, else ``other`` with the per-source list (also
    for a source under ``other``/``unknown`` terms: publishing requires the list then)."""
    ids = sorted({s["license"] for s in sources})
    if len(ids) == 1 and ids[0].lower() not in OPEN_IDS:
        return ids[0], []
    return "other", [f"{s['title']}: {s['license']}" for s in sources]


def total_records(manifest: dict) -> int:
    return sum(c["records"] for c in manifest["counts"]["splits"].values())


def card_metadata(out: Path, manifest: dict) -> DatasetCardData:
    license_id, license_list = combined_license(manifest["sources"])
    extra = {}
    if license_list:
        extra = {"license_name": "per-source", "license_details": "; ".join(license_list)}
    modalities = sorted({s["modality"] for s in manifest["sources"]})
    return DatasetCardData(
        license=license_id,
        language=["en"],
        pretty_name=manifest.get("pretty_name", "MedGround grounding data"),
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(total_records(manifest))],
        tags=["medical", "referring-expression-grounding", "visual-grounding", *modalities],
        configs=configs_metadata(out),
        dataset_info=dataset_info_metadata(out),
        **extra,
    )


def label_counts(out: Path) -> list[dict]:
    """Targets and kept queries per (split, source, label), from the grounding shards."""
    targets: Counter = Counter()
    queried: Counter = Counter()
    queries: Counter = Counter()
    for row in iter_rows(out, "grounding", columns=("split", "source", "label", "queries")):
        key = (row["split"], row["source"], row["label"])
        kept = sum(1 for q in row["queries"] or [] if q["kept"])
        targets[key] += 1
        queried[key] += kept > 0
        queries[key] += kept
    order = sorted(targets, key=lambda k: (split_key(k[0]), k[1], k[2]))
    return [
        {
            "split": k[0],
            "source": k[1],
            "label": k[2],
            "targets": targets[k],
            "with_queries": queried[k],
            "queries": queries[k],
        }
        for k in order
    ]


def config_sizes(out: Path, manifest: dict) -> list[dict]:
    """Bytes on disk of each config, and that size over the bytes of the distinct images the
    dataset holds (each config that embeds images stores each of them once)."""
    images = manifest["counts"].get("image_bytes")
    rows = []
    for config in configs_metadata(out):
        name = config["config_name"]
        size = sum(p.stat().st_size for p in (out / name).glob("*.parquet"))
        ratio = f"{size / images:.2f}" if images else "-"
        rows.append({"config": name, "mb": f"{size / 2**20:.1f}", "ratio": ratio})
    total = sum(float(r["mb"]) for r in rows)
    if images:
        rows.append(
            {"config": "**total**", "mb": f"{total:.1f}", "ratio": f"{total * 2**20 / images:.2f}"}
        )
    return rows


def pass_rates(verification: dict | None) -> list[dict]:
    """Per stage and source: checked, passed and the pass rate in percent."""
    rows = []
    for stage in (verification or {}).get("stages", []):
        checked = stage["checked"]
        rate = 100.0 * stage["passed"] / checked if checked else 0.0
        rows.append({**stage, "rate": f"{rate:.1f}"})
    return rows


def type_name(feature) -> str:
    """Short, readable type of a ``datasets`` feature for the schema table."""
    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, Image):
        return "image"
    if isinstance(feature, (List, LargeList)):
        inner = type_name(feature.feature)
        size = getattr(feature, "length", -1)
        return f"list<{inner}>[{size}]" if size and size > 0 else f"list<{inner}>"
    if isinstance(feature, dict):
        return "{" + ", ".join(feature) + "}"
    return type(feature).__name__


def schema_rows(features: Features) -> list[tuple[str, str]]:
    return [(name, type_name(feature)) for name, feature in features.items()]


def convention_rows() -> list[dict]:
    """One line per chat dialect: config, box convention and an example answer shape."""
    example = [12, 34, 156, 178]
    rows = []
    for dialect in DIALECTS.values():
        coords = dialect.coords(example, 256, 256)
        answer = dialect.answer("the polyp", "polyp", coords)
        if dialect.name == "ms-swift":
            answer = f"<bbox> + objects.bbox {coords}"
        rows.append({"config": dialect.config, "convention": dialect.convention, "answer": answer})
    return rows


def render_card(out: Path, manifest: dict) -> str:
    template_text = resources.files("medground_hf.dataset_card").joinpath("card.md.j2").read_text()
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    _, license_list = combined_license(manifest["sources"])
    body = env.from_string(template_text).render(
        manifest=manifest,
        license_list=license_list,
        configs=configs_metadata(out),
        total=total_records(manifest),
        splits=sorted(manifest["counts"]["splits"], key=split_key),
        labels=label_counts(out),
        verification=manifest.get("verification"),
        rates=pass_rates(manifest.get("verification")),
        formats=manifest.get("formats"),
        sizes=config_sizes(out, manifest),
        image_mb=f"{manifest['counts'].get('image_bytes', 0) / 2**20:.1f}",
        schema=schema_rows(GROUNDING_FEATURES),
        conventions=convention_rows(),
        qwen_resize=boxes.QWEN25_RESIZE,
        qwen_finetune=boxes.QWEN25_FINETUNE_RESIZE,
    )
    return f"---\n{card_metadata(out, manifest).to_yaml()}\n---\n\n{body}"
