"""A synthetic 2D corpus of any size, written to a temporary folder (never into the project):
photographs with one or two bright blobs each, and their masks, in the ``image_mask_folder``
layout (``images/<name>.jpg``, ``masks/<name>.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_corpus(root: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``count`` JPEG images of ``size`` x ``size`` with noisy texture (so they compress like
    photographs, not flat colour) and 1-2 elliptic targets; returns ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for index in range(count):
        image = rng.normal(90, 25, (size, size, 3))
        mask = np.zeros((size, size), np.uint8)
        for blob in range(1 + index % 2):
            cx, cy = rng.uniform(0.2, 0.8, 2) * size
            rx, ry = rng.uniform(0.06, 0.15, 2) * size
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
            if blob and (mask[inside]).any():  # keep the two targets apart
                continue
            mask[inside] = 255
            image[inside] += 80
        name = f"case{index:05d}"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
            root / "images" / f"{name}.jpg", quality=90
        )
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root
