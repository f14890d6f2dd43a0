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


@pytest.fixture(scope="session")
def built_brats(brats_dir: Path, tmp_path_factory) -> Path:
    """A dataset folder built from the BraTS samples, default slice policy (treat as read-only)."""
    out = tmp_path_factory.mktemp("built") / "brats"
    build("brats", brats_dir, out)
    return out
