"""Versioned publishing against a fake Hub on 127.0.0.1, with the real huggingface_hub and datasets
clients (run as subprocesses so ``HF_ENDPOINT`` takes effect), loaded back by revision."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_hub import FakeHub
from huggingface_hub import DatasetCard

from medground_hf.build import write_card
from medground_hf.cli import main
from medground_hf.folder import read_manifest, write_manifest
from medground_hf.hub import PublishError, plan, publish

TOKEN = "hf_fake_secret_token_0123456789"
REPO = "medground-org/medground"

LOAD = """
import json, sys
from datasets import load_dataset
repo, revision = sys.argv[1], sys.argv[2]
result = {}
for config in sys.argv[3:]:
    ds = load_dataset(repo, config, revision=revision)
    key = "record_id" if config == "coco" else "id"
    rows = lambda split: (a for r in ds[split] for a in (r["annotations"] if key != "id" else [r]))
    result[config] = {split: sorted(a[key] for a in rows(split)) for split in ds}
print(json.dumps(result))
"""


def local_ids(out: Path, configs: tuple[str, ...] = ("grounding",)) -> dict[str, list[str]]:
    """Target ids per split of the given shard configs, each id once."""
    ids: dict[str, set[str]] = {}
    for config in configs:
        for shard in sorted((out / config).glob("*.parquet")):
            split = shard.name.split("-")[0]
            ids.setdefault(split, set()).update(
                pq.read_table(shard, columns=["id"]).column(0).to_pylist()
            )
    return {k: sorted(v) for k, v in ids.items()}


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def published(kvasir_queries, hc18_queries, tmp_path_factory):
    """v1.0.0 = Kvasir folder, v1.1.0 = HC18 folder, both pushed through the CLI."""
    home = tmp_path_factory.mktemp("hf-home")
    with FakeHub() as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.endpoint,
            "HF_TOKEN": TOKEN,
            "HF_HOME": str(home),
            "NO_PROXY": "127.0.0.1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",  # the fake Hub speaks LFS, not Xet
        }
        cli = [sys.executable, "-m", "medground_hf.cli", "publish"]
        first = run([*cli, str(kvasir_queries), "--repo-id", REPO, "--version", "v1.0.0"], env)
        assert first.returncode == 0, first.stderr
        second = run([*cli, str(hc18_queries), "--repo-id", REPO, "--version", "v1.1.0"], env)
        assert second.returncode == 0, second.stderr
        yield {"hub": hub, "env": env, "home": home, "outputs": [first, second], "cli": cli}


def load(published, revision: str, *configs: str) -> dict:
    proc = run([sys.executable, "-c", LOAD, REPO, revision, *configs], published["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_each_version_loads_back_exactly(published, kvasir_queries, hc18_queries):
    kvasir, hc18 = local_ids(kvasir_queries), local_ids(hc18_queries)
    v1 = load(published, "v1.0.0", "grounding", "coco", "chat-qwen2.5-vl")
    assert v1["grounding"] == kvasir
    assert v1["coco"] == kvasir
    chat = {s: sorted(set(ids)) for s, ids in v1["chat-qwen2.5-vl"].items()}
    assert set(chat["train"]) <= set(kvasir["train"])
    # the second version replaced the data on main but left the first tag untouched
    assert load(published, "v1.1.0", "grounding")["grounding"] == hc18
    assert load(published, "main", "grounding")["grounding"] == hc18
    repo = published["hub"].repos[REPO]
    assert set(repo.tags) == {"v1.0.0", "v1.1.0"}
    v2_files = repo.commits[repo.tags["v1.1.0"]].files
    assert not any("test-" in f for f in v2_files), "HC18 has no test split: stale files deleted"
    assert any("grounding/test-" in f for f in repo.commits[repo.tags["v1.0.0"]].files)
    # the shards went through LFS, as Parquet does on the real Hub
    assert all(
        data in published["hub"].lfs.values()
        for f, data in v2_files.items()
        if f.endswith(".parquet")
    )


def test_an_existing_tag_is_never_overwritten(published, hc18_queries):
    repo = published["hub"].repos[REPO]
    before = dict(repo.tags), repo.branches["main"]
    cmd = [*published["cli"], str(hc18_queries), "--repo-id", REPO, "--version", "v1.0.0"]
    proc = run(cmd, published["env"])
    assert proc.returncode == 2
    assert "tag v1.0.0 already exists" in proc.stderr
    assert (dict(repo.tags), repo.branches["main"]) == before


def test_convert_reads_a_published_version(published, tmp_path):
    to = tmp_path / "coco"
    cmd = [sys.executable, "-m", "medground_hf.cli", "convert", REPO, "--revision", "v1.0.0"]
    proc = run([*cmd, "--format", "coco", "--to", str(to)], published["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((to / "instances_train.json").read_text())
    assert doc["annotations"] and doc["categories"][0]["name"] == "polyp"


def test_a_merged_multi_source_folder_publishes_and_loads_by_tag(published, merged_kvasir_brats):
    """Kvasir-SEG + BraTS slices, merged: the card licence is `other` (no commercial grant), so
    it publishes; every config, the rejected one included, loads back by tag."""
    repo_id = "medground-org/merged"
    cmd = [*published["cli"], str(merged_kvasir_brats), "--repo-id", repo_id]
    proc = run([*cmd, "--version", "v0.1.0"], published["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "licence other" in proc.stdout
    configs = ("grounding", "rejected", "coco", "chat-internvl")
    proc = run([sys.executable, "-c", LOAD, repo_id, "v0.1.0", *configs], published["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    local = local_ids(merged_kvasir_brats)
    assert loaded["grounding"] == local
    # COCO annotates every target, those verification rejected included
    assert loaded["coco"] == local_ids(merged_kvasir_brats, ("grounding", "rejected"))
    assert sum(map(len, loaded["coco"].values())) > sum(map(len, local.values()))
    sources = {i.split("/")[0] for ids in loaded["grounding"].values() for i in ids}
    assert sources == {"kvasir_seg", "brats2013"}
    rejected = pq.read_table(next((merged_kvasir_brats / "rejected").glob("*.parquet")))
    assert set(rejected.column("id").to_pylist()) <= {
        i for ids in loaded["rejected"].values() for i in ids
    }
    chat = {i for ids in loaded["chat-internvl"].values() for i in ids}
    assert {i.split("/")[0] for i in chat} == sources
    card = published["hub"].repos[repo_id].commits[published["hub"].repos[repo_id].tags["v0.1.0"]]
    assert b"license: other" in card.files["README.md"]


def test_brats_under_a_commercial_card_licence_is_refused(built_brats, tmp_path, capsys):
    """The real BraTS build (cc-by-nc-sa-3.0) publishes under its own licence; a card edited to
    a commercial licence is refused by the CLI before any network access."""
    assert plan(built_brats, REPO, "v1.0.0").license == "cc-by-nc-sa-3.0"
    out = tmp_path / "brats"
    shutil.copytree(built_brats, out)
    card = DatasetCard.load(out / "README.md")
    card.data.license = "cc-by-4.0"
    card.save(out / "README.md")
    assert main(["publish", str(out), "--repo-id", REPO, "--version", "v1.0.0", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "card licence 'cc-by-4.0' allows commercial use" in err
    assert "brats2013 (cc-by-nc-sa-3.0) must not be used commercially" in err


def test_the_token_is_sent_but_never_printed_or_written(published, kvasir_queries):
    assert f"Bearer {TOKEN}" in published["hub"].auth_headers
    for proc in published["outputs"]:
        assert TOKEN not in proc.stdout + proc.stderr
        assert "tagged v1." in proc.stdout
    for root in (published["home"], kvasir_queries):
        for path in Path(root).rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert TOKEN.encode() not in path.read_bytes(), path


def make_non_commercial(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    manifest = read_manifest(dst)
    manifest["sources"][0].update(commercial_use=False, license="cc-by-nc-sa-3.0")
    write_manifest(dst, manifest)
    return dst


def test_non_commercial_source_under_a_commercial_licence_is_refused(kvasir_queries, tmp_path):
    out = make_non_commercial(kvasir_queries, tmp_path / "nc")
    # the card still says cc-by-4.0 (e.g. edited by hand): refused before any upload
    with pytest.raises(PublishError, match=r"kvasir_seg \(cc-by-nc-sa-3.0\) must not be used"):
        publish(out, REPO, "v1.0.0", dry_run=True)
    write_card(out)  # the card now carries the source's own non-commercial licence
    assert plan(out, REPO, "v1.0.0").license == "cc-by-nc-sa-3.0"


def test_records_with_a_non_commercial_licence_are_refused(kvasir_queries, tmp_path):
    out = tmp_path / "records"
    shutil.copytree(kvasir_queries, out)
    shard = next((out / "grounding").glob("train-*.parquet"))
    table = pq.read_table(shard)
    index = table.schema.get_field_index("source_license")
    column = pa.array(["cc-by-nc-4.0"] * table.num_rows, pa.string())
    pq.write_table(table.set_column(index, "source_license", column), shard)
    write_manifest(out, read_manifest(out))  # as a build writing such records would
    with pytest.raises(PublishError, match=r"cc-by-nc-4.0"):
        plan(out, REPO, "v1.0.0")


def test_mixed_licences_publish_as_other_with_the_per_source_list(kvasir_queries, tmp_path):
    out = tmp_path / "mixed"
    shutil.copytree(kvasir_queries, out)
    manifest = read_manifest(out)
    manifest["sources"].append(
        {
            **manifest["sources"][0],
            "name": "brats",
            "title": "BraTS 2013",
            "license": "cc-by-nc-sa-3.0",
            "commercial_use": False,
        }
    )
    write_manifest(out, manifest)
    write_card(out)
    card = (out / "README.md").read_text()
    assert "license: other" in card and "BraTS 2013: cc-by-nc-sa-3.0" in card
    assert plan(out, REPO, "v2.0.0").license == "other"


def test_dry_run_bad_version_and_missing_token(kvasir_queries, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert (
        main(
            ["publish", str(kvasir_queries), "--repo-id", REPO, "--version", "v1.0.0", "--dry-run"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "dry run: nothing was uploaded" in out and "config chat-qwen2.5-vl" in out
    assert main(["publish", str(kvasir_queries), "--repo-id", REPO, "--version", "1.0"]) == 2
    assert "not of the form vX.Y.Z" in capsys.readouterr().err
    assert main(["publish", str(kvasir_queries), "--repo-id", REPO, "--version", "v1.0.0"]) == 2
    assert "HF_TOKEN is not set" in capsys.readouterr().err
