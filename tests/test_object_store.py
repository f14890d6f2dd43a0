"""``--data-dir`` and ``--out`` as fsspec URLs, against a real S3-compatible server on 127.0.0.1
(moto's server mode, the real s3fs client; ``tests/object_store.py``): the same rows as a local
build; an output replaced by upload and swap, old folder complete until the swap, a killed run
resumed and an interrupted swap finished by the rerun; one-line errors naming the URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from built_rows import build_rows
from datasets import Image, load_dataset
from test_shards_and_workers import assert_same_rows, same_manifest
from test_volume_builders import phantom, save, write_msd

from medground_hf.build import build
from medground_hf.cli import main
from medground_hf.folder import read_manifest
from medground_hf.formats.export import export
from medground_hf.integrity import FolderMismatch, check_folder
from medground_hf.storage import stamp


def cli(*args: str, fault: str | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    environ.pop("MEDGROUND_FAULT", None)
    if fault:
        environ["MEDGROUND_FAULT"] = fault
    cmd = [sys.executable, "-m", "medground_hf.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=300)


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_kvasir_from_s3_to_s3_equals_the_local_build(object_store, generated_kvasir, tmp_path):
    out = object_store.new_url("kvasir")
    work = tmp_path / "work"
    manifest = build("kvasir_seg", object_store.url("kvasir"), out, work_dir=work)
    assert not any(work.iterdir())  # the local staging folder is gone once the folder is up
    assert check_folder(out)["counts"] == manifest["counts"]
    assert object_store.keys(out) == sorted(
        p.relative_to(generated_kvasir).as_posix()
        for p in generated_kvasir.rglob("*")
        if p.is_file()
    )
    copy = object_store.download(out, tmp_path / "copy")
    assert_same_rows(copy, generated_kvasir)
    same_manifest(manifest, read_manifest(generated_kvasir))
    assert not object_store.keys(out + ".incoming")
    # what a trainer reads: the shards by URL, through datasets and fsspec
    options = {"client_kwargs": {"endpoint_url": object_store.endpoint}}
    files = {"train": f"{out}/grounding/train-*.parquet"}
    remote = load_dataset("parquet", data_files=files, split="train", storage_options=options)
    local = load_dataset(str(generated_kvasir), "grounding", split="train")
    assert (
        remote.cast_column("image", Image(decode=False))["image"]
        == local.cast_column("image", Image(decode=False))["image"]
    )
    # a shard rewritten in the store after the build: readers refuse the folder, naming it
    shard = f"{out}/grounding/train-00000-of-00001.parquet"
    object_store.fs.pipe_file(shard.removeprefix("s3://"), b"PAR1")
    with pytest.raises(FolderMismatch, match=f"{shard}: 4 bytes where medground.json says"):
        check_folder(out)


def test_brats_from_s3_equals_the_local_build(object_store, built_brats, tmp_path):
    url = object_store.url("brats")
    manifest = build("brats", url, tmp_path / "brats", derived_configs=["all"])
    assert_same_rows(tmp_path / "brats", built_brats)
    same_manifest(manifest, read_manifest(built_brats))


def hc18_subset(hc18_dir, root):
    images = root / "training_set"
    images.mkdir(parents=True)
    for stem in ("000_HC", "001_HC", "002_HC", "003_HC"):
        for name in (f"{stem}.png", f"{stem}_Annotation.png"):
            (images / name).write_bytes((hc18_dir / "training_set" / name).read_bytes())
    csv = "training_set_pixel_size_and_HC.csv"
    (root / csv).write_bytes((hc18_dir / csv).read_bytes())
    return root, {}


def coco_export(built_kvasir, root):
    export(built_kvasir, "coco", root)
    return root, {"min_size": 32, "modality": "endoscopy"}


def msd_task(root):
    return write_msd(root, cases=1), {}


def labelmap_corpus(root):
    for case in ("case01", "case02"):
        image, labels = phantom(int(case[-1]))
        save(root / "images" / f"{case}.nii", image)  # uncompressed NIfTI
        save(root / "labels" / f"{case}.nii.gz", labels.astype(np.float32))
    (root / "names.csv").write_text("value,name\n1,edema\n2,enhancing tumour\n")
    return root, {"label_names_file": "names.csv", "source_name": "phantoms"}


@pytest.mark.parametrize("source", ["hc18", "coco_instances", "msd", "nifti_labelmap"])
def test_every_source_reads_a_url_data_dir(source, object_store, hc18_dir, built_kvasir, tmp_path):
    """The 2D sources (kvasir_seg above; hc18; image_mask_folder, which both are; COCO
    instances) and the NIfTI ones (brats above; msd; nifti_labelmap): the same records from an
    s3:// copy of a corpus as from the local folder."""
    make = {
        "hc18": lambda root: hc18_subset(hc18_dir, root),
        "coco_instances": lambda root: coco_export(built_kvasir, root),
        "msd": msd_task,
        "nifti_labelmap": labelmap_corpus,
    }[source]
    local, options = make(tmp_path / "corpus")
    url = object_store.new_url(source)
    object_store.fs.put(str(local), url.removeprefix("s3://"), recursive=True)
    expected = build_rows(source, local, tmp_path / "local", **options)
    assert expected
    assert build_rows(source, url, tmp_path / "from-url", **options) == expected


def test_an_object_stamp_changes_with_its_content(object_store):
    """Resume takes a finished item only while its files' stamps are unchanged."""
    key = object_store.url("scratch", "stamp.bin").removeprefix("s3://")
    object_store.fs.pipe_file(key, b"one")
    first = stamp("s3://" + key)
    object_store.fs.pipe_file(key, b"two")
    object_store.fs.invalidate_cache()
    assert stamp("s3://" + key) != first
    assert first.startswith("3:")
    object_store.fs.rm_file(key)
    object_store.fs.invalidate_cache()
    assert stamp("s3://" + key) == "missing"


def test_a_killed_url_build_keeps_the_old_folder_resumes_and_finishes_the_swap(
    object_store, built_kvasir, generated_kvasir, tmp_path
):
    out = object_store.new_url("replaced")
    object_store.fs.put(str(built_kvasir), out.removeprefix("s3://"), recursive=True)  # old
    before = check_folder(out)
    new = ["build", "kvasir_seg", "--data-dir", object_store.url("kvasir"), "--out", out,
           "--work-dir", str(tmp_path / "work"), "--overwrite"]  # fmt: skip

    def old_folder_intact() -> None:
        assert check_folder(out) == before

    killed = cli(*new, fault="item@20")  # mid records
    assert killed.returncode == -9
    old_folder_intact()
    killed = cli(*new, fault="upload@3")  # mid upload
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "item(s) taken from the interrupted run" in killed.stderr
    old_folder_intact()
    killed = cli(*new, fault="swap")  # the old manifest removed, nothing copied yet
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "3 already there from the interrupted run" in killed.stderr, killed.stderr[-2000:]
    with pytest.raises(FolderMismatch, match="being replaced.*rerun the command"):
        check_folder(out)

    done = cli(*new)  # the same command: finishes the swap, and with it the build
    assert done.returncode == 0, done.stderr[-2000:]
    assert "finishing the replacement an interrupted run left" in done.stderr
    assert "already written by this same command" in done.stderr
    copy = object_store.download(out, tmp_path / "copy")
    assert_same_rows(copy, generated_kvasir)
    assert json.loads((copy / "medground.json").read_text())["counts"]["items_built"] == 40
    assert not object_store.keys(out + ".incoming")


def test_store_failures_are_one_line_naming_the_url(object_store, kvasir_dir, tmp_path, capsys):
    missing = "s3://no-such-bucket/kvasir"
    assert main(["build", "kvasir_seg", "--data-dir", missing, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"error: {missing}: " in err
    assert main(["build", "kvasir_seg", "--data-dir", str(kvasir_dir), "--out", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert f"error: {missing}: cannot write: The specified bucket does not exist" in err
    assert not (tmp_path / "a").exists()

    unreachable = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    proc = cli("build", "kvasir_seg", "--data-dir", object_store.url("kvasir"),
               "--out", str(tmp_path / "b"), **unreachable)  # fmt: skip
    line = error_line(proc)
    assert object_store.url("kvasir") in line and "Could not connect" in line


def test_missing_files_at_a_url_are_named(object_store, tmp_path, capsys):
    assert main(["build", "kvasir_seg", "--data-dir", object_store.url("nothing-here"),
                 "--out", str(tmp_path / "a")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"{object_store.url('nothing-here')}: data dir does not exist" in err

    corpus = object_store.url("kvasir-no-mask")
    fs = object_store.fs
    fs.copy(object_store.url("kvasir").removeprefix("s3://"), corpus.removeprefix("s3://"),
            recursive=True)  # fmt: skip
    stem = "cju0s690hkp960855tjuaqvv0"
    fs.rm_file(f"{corpus.removeprefix('s3://')}/masks/{stem}.jpg")
    fs.invalidate_cache()
    assert main(["build", "kvasir_seg", "--data-dir", corpus, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"{corpus}/images/{stem}.jpg: no mask matches {corpus}/masks/{stem}.jpg" in err

    assert main(["build", "dicom_seg", "--data-dir", corpus, "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"{corpus}: dicom_seg cannot read a URL --data-dir" in err and "mount the bucket" in err


def test_readers_other_than_build_refuse_a_url(object_store, generated_kvasir, tmp_path, capsys):
    url = object_store.url("out", "anything")
    for argv in (
        ["export", url, "--format", "llava", "--to", str(tmp_path / "x")],
        ["export", str(generated_kvasir), "--format", "llava", "--to", url],
        ["merge", str(generated_kvasir), url, "--out", str(tmp_path / "m")],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"error: {url}: medground {argv[0]} reads" in err
