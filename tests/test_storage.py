"""Each image is stored once per config that embeds it, and a default build stays within 3x
the bytes of its images; the card says how large each config is."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
from datasets import Image, load_dataset

from medground_hf.folder import config_shards, read_manifest


def stored_bytes(folder, config: str, column: str = "image.bytes") -> int:
    """Bytes one leaf column takes in a config's shards (every row group)."""
    total = 0
    for path in config_shards(folder, config):
        meta = pq.ParquetFile(path).metadata
        names = [meta.row_group(0).column(i).path_in_schema for i in range(meta.num_columns)]
        at = names.index(column)
        total += sum(
            meta.row_group(g).column(at).total_compressed_size for g in range(meta.num_row_groups)
        )
    return total


def distinct_images(folder, config: str = "grounding") -> dict[str, int]:
    sizes = {}
    for path in config_shards(folder, config):
        for image in pq.read_table(path, columns=["image"]).column("image").to_pylist():
            sizes[hashlib.sha256(image["bytes"]).hexdigest()] = len(image["bytes"])
    return sizes


def rows(folder, config: str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in config_shards(folder, config))


def test_grounding_stores_each_image_once(generated_kvasir, built_brats, kvasir_dir):
    for folder in (generated_kvasir, built_brats):
        unique = sum(distinct_images(folder).values())
        assert rows(folder, "grounding") > len(distinct_images(folder))  # images shared
        assert stored_bytes(folder, "grounding") <= 1.01 * unique + 4096
    # every row still carries its image: the original file's bytes, through load_dataset
    ds = load_dataset(str(generated_kvasir), "grounding", split="train")
    for row in ds.cast_column("image", Image(decode=False)).select_columns(["image", "image_id"]):
        name = row["image_id"].split("/", 1)[1]
        assert row["image"]["bytes"] == (kvasir_dir / "images" / f"{name}.jpg").read_bytes()
    decoded = ds[0]["image"]
    assert decoded.size == (ds[0]["width"], ds[0]["height"])


def test_a_default_build_is_at_most_3x_its_images_and_the_card_says_so(generated_kvasir):
    manifest = read_manifest(generated_kvasir)
    images = manifest["counts"]["image_bytes"]
    assert images == sum(distinct_images(generated_kvasir).values())
    assert {p.parent.name for p in generated_kvasir.glob("*/*.parquet")} <= {
        "grounding", "rejected", "coco"
    }  # fmt: skip
    total = sum(p.stat().st_size for p in generated_kvasir.glob("*/*.parquet"))
    assert total <= 3 * images, total / images
    card = (generated_kvasir / "README.md").read_text()
    size = sum(p.stat().st_size for p in generated_kvasir.glob("grounding/*.parquet"))
    assert f"| `grounding` | {size / 2**20:.1f} | {size / images:.2f} |" in card


def test_coco_and_chat_configs_also_store_each_image_once(built_brats):
    unique = sum(distinct_images(built_brats).values())
    assert read_manifest(built_brats)["counts"]["image_bytes"] >= unique  # + rejected-only ones
    for config, column in (
        ("coco", "image.bytes"),
        ("chat-llava", "image.bytes"),
        ("chat-sharegpt", "images.list.element.bytes"),
    ):
        assert rows(built_brats, config) > len(distinct_images(built_brats)) or config == "coco"
        assert stored_bytes(built_brats, config, column) <= 1.01 * unique + 4096, config
