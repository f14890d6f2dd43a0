"""The refer API's loading logic (``REFER`` of the RefCOCO toolkit), re-implemented from its
documented behaviour so the tests can read an export the way RefCOCO tools do; it is not on
PyPI. What matters is kept exactly:

- ``REFER(data_root, dataset, splitBy)`` reads ``<data_root>/<dataset>/refs(<splitBy>).p`` with
  ``pickle`` and ``<data_root>/<dataset>/instances.json`` with ``json``, and accepts only the
  dataset names ``refcoco``, ``refcoco+``, ``refcocog`` and ``refclef`` (it exits otherwise);
- the index maps refs, annotations, images and sentences by id, so a duplicate id silently
  overwrites an earlier entry;
- ``getRefIds(split=...)`` knows ``train``, ``val``, ``test`` and ``testA``/``testB``/``testC``
  (matched by letter) and exits on any other split name;
- ``getRefBox`` returns the annotation's ``bbox``;
- ``getMask`` tests ``type(segmentation[0]) == list`` for polygons, else decodes the
  segmentation as a list of RLEs with pycocotools' ``mask.decode`` and sums the masks over the
  last axis; the area is the sum of ``mask.area``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

DATASETS = ("refcoco", "refcoco+", "refcocog", "refclef")


class ReferExit(SystemExit):
    """Where the refer API calls ``sys.exit()``."""


class Refer:
    def __init__(self, data_root: str | Path, dataset: str = "refcoco", split_by: str = "unc"):
        if dataset not in DATASETS:
            raise ReferExit(f"No refer dataset is called [{dataset}]")
        folder = Path(data_root) / dataset
        with open(folder / f"refs({split_by}).p", "rb") as fh:
            self.refs_list = pickle.load(fh)
        with open(folder / "instances.json") as fh:
            instances = json.load(fh)
        self.anns = {a["id"]: a for a in instances["annotations"]}
        self.imgs = {i["id"]: i for i in instances["images"]}
        self.cats = {c["id"]: c["name"] for c in instances["categories"]}
        self.refs = {r["ref_id"]: r for r in self.refs_list}
        self.ref_to_ann = {r["ref_id"]: self.anns[r["ann_id"]] for r in self.refs_list}
        self.sents = {s["sent_id"]: s for r in self.refs_list for s in r["sentences"]}

    def get_ref_ids(self, split: str = "") -> list[int]:
        refs = self.refs_list
        if split in ("testA", "testB", "testC"):
            refs = [r for r in refs if split[-1] in r["split"]]
        elif split == "test":
            refs = [r for r in refs if "test" in r["split"]]
        elif split in ("train", "val"):
            refs = [r for r in refs if r["split"] == split]
        elif split:
            raise ReferExit(f"No such split [{split}]")
        return [r["ref_id"] for r in refs]

    def get_ref_box(self, ref_id: int) -> list[float]:
        return self.ref_to_ann[ref_id]["bbox"]

    def get_mask(self, ref: dict) -> dict:
        ann = self.ref_to_ann[ref["ref_id"]]
        image = self.imgs[ref["image_id"]]
        segmentation = ann["segmentation"]
        if type(segmentation[0]) is list:  # polygons (raises KeyError 0 on a bare RLE dict)
            rle = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
        else:
            rle = segmentation
        m = mask_utils.decode(rle)
        m = np.sum(m, axis=2).astype(np.uint8)
        return {"mask": m, "area": sum(mask_utils.area(rle))}
