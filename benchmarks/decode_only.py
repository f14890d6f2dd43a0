"""The decode-only CLI: what any build of a 2D source must do at least, as a command of its own.

A fresh interpreter lists the corpus (the image/mask pairs of ``corpora.SOURCES``) and decodes
every image and every mask once to pixels with Pillow and NumPy, nothing else: the reference
``benchmarks/bench_cli.py`` divides a whole ``medground build`` by.

    python benchmarks/decode_only.py SOURCE DATA_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from corpora import SOURCES
from PIL import Image


def decode_all(source: str, data_dir: Path) -> int:
    """Decode every image and mask of the corpus once; returns the number of pixels decoded."""
    pixels = 0
    for image, mask in SOURCES[source][2](data_dir):
        for path in (image, mask):
            with Image.open(path) as im:
                pixels += np.asarray(im).size
    return pixels


if __name__ == "__main__":
    print(decode_all(sys.argv[1], Path(sys.argv[2])))
