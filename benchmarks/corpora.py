"""The benchmark corpora: the shared samples replicated by symlinks (to amortise start-up),
Kvasir-SEG resized back to its released resolution, and the image/mask pairs of each source
(what a bare decode reads). Shared by the build benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def replicate(src: Path, dst: Path, subdirs: list[str], copies: int, extra: list[str]) -> None:
    """Symlink every file ``copies`` times under new stems (r00_<stem>, r01_<stem>, ...)."""
    for sub in subdirs:
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / sub).iterdir()):
            for k in range(copies):
                (dst / sub / f"r{k:02d}_{f.name}").symlink_to(f.resolve())
    for name in extra:
        (dst / name).write_text(replicated_csv(src / name, copies))


def replicated_csv(path: Path, copies: int) -> str:
    header, *rows = path.read_text().splitlines()
    return "\n".join([header] + [f"r{k:02d}_{r}" for k in range(copies) for r in rows]) + "\n"


def kvasir_at_original_size(src: Path, dst: Path) -> Path:
    """The Kvasir samples resized back to their original resolution (from kavsir_bboxes.json).

    The shared copies are 256x256; the released corpus is 332x487 to 1920x1072 pixels, where
    decoding costs several times more. Images are resized bicubically, masks by nearest
    neighbour, both saved as JPEG like the release.
    """
    sizes = json.loads((src / "kavsir_bboxes.json").read_text())
    for sub, resample in (
        ("images", Image.Resampling.BICUBIC),
        ("masks", Image.Resampling.NEAREST),
    ):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((src / sub).iterdir()):
            entry = sizes[path.stem]
            with Image.open(path) as im:
                im.resize((entry["width"], entry["height"]), resample).save(
                    dst / sub / path.name, quality=95
                )
    return dst


SOURCES = {
    "kvasir_seg": (
        ["images", "masks"],
        [],
        lambda d: [(p, d / "masks" / p.name) for p in sorted((d / "images").iterdir())],
    ),
    "hc18": (
        ["training_set"],
        ["training_set_pixel_size_and_HC.csv"],
        lambda d: [
            (p, p.with_name(p.stem + "_Annotation.png"))
            for p in sorted((d / "training_set").glob("*HC.png"))
        ],
    ),
}
