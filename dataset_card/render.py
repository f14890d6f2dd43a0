"""Render ``README.md`` for a built folder from its manifest and shard layout.

The YAML header is produced by ``huggingface_hub.DatasetCardData`` (so it is what the Hub parses)
and the body by the Jinja template ``card.md.j2``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jinja2
from huggingface_hub import DatasetCardData

from medground_hf.folder import configs_metadata, dataset_info_metadata

SIZE_BUCKETS = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


def size_category(n: int) -> str:
    for limit, name in SIZE_BUCKETS:
        if n < limit:
            return name
    return "n>1M"


def combined_license(sources: list[dict]) -> tuple[str, list[str]]:
    """One licence id when every source shares it, else ``other`` with the per-source list."""
    ids = sorted({s["license"] for s in sources})
    if len(ids) == 1:
        return ids[0], []
    return "other", [f"{s['title']}: {s['license']}" for s in sources]


def total_records(manifest: dict) -> int:
    return sum(c["records"] for c in manifest["counts"]["splits"].values())


def card_metadata(out: Path, manifest: dict) -> DatasetCardData:
    license_id, _ = combined_license(manifest["sources"])
    modalities = sorted({s["modality"] for s in manifest["sources"]})
    return DatasetCardData(
        license=license_id,
        language=["en"],
        pretty_name=manifest.get("pretty_name", "MedGround grounding data"),
        task_categories=["image-text-to-text", "object-detection"],
        size_categories=[size_category(total_records(manifest))],
        tags=["medical", "referring-expression-grounding", "visual-grounding", *modalities],
        configs=configs_metadata(out),
        dataset_info=dataset_info_metadata(out),
    )


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
    )
    return f"---\n{card_metadata(out, manifest).to_yaml()}\n---\n\n{body}"
