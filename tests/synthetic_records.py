"""Records made by the core from constructed images and masks (real cues, real relations), and
a verifier run over them: shared by the verification test modules."""

from __future__ import annotations

import numpy as np
from medground_hf.generation import verify
from medground_hf.generation.pipeline import verifier_terms

from medground_hf.sample import Sample, sample_to_records
from medground_hf.source import LabelSpec, SourceInfo

SHAPE = (200, 300)
POLYP = LabelSpec(
    1, "polyp", "polyp", synonyms=("colorectal polyp",), min_size=4, modalities=("endoscopy",)
)
LESION = LabelSpec(1, "lesion", "lesion", min_size=4, area_mm2_range=(10.0, 5000.0))


def source(*labels: LabelSpec, modality: str = "endoscopy", body_part: str = "colon"):
    return SourceInfo(
        "synthetic", "Synthetic", "cc-by-4.0", "", True, "", "", modality, body_part, "", labels
    )


def disk(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def box(shape, y0, x0, y1, x1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def records(masks, *, spec=POLYP, image=None, modality="endoscopy", body_part="colon", **kwargs):
    """The records of one image whose targets are ``masks`` (one label)."""
    if image is None:  # bright targets on a mid-grey textured background
        rng = np.random.default_rng(0)
        image = rng.integers(60, 90, size=masks[0].shape, dtype=np.uint8)
        for m in masks:
            image[m] = 200
    sample = Sample(
        case_id="case",
        group_id="case",
        image=image,
        image_bytes=b"",
        masks=[(spec, np.logical_or.reduce(masks))],
        source_files=[],
        modality=modality,
        **kwargs,
    )
    src = source(spec, modality=modality, body_part=body_part)
    out, _ = sample_to_records(sample, src, builder="t", builder_version="1", config_name="d")
    return out


def run(record, text, siblings=(), spec=POLYP, style="location", structures=None, judge=False):
    """Every verdict of ``text`` about ``record`` (siblings: the image's targets)."""
    verifier = verify.Verifier(
        {spec.name: spec}, structures or verifier_terms({}, set()), judge=judge
    )
    target = verifier.target_checks(record)
    return verifier.query_checks(record, text, style, target, list(siblings))


def failed(verdicts) -> dict[str, str]:
    return {f"{v.stage}.{v.check}": v.reason for v in verdicts if not v.passed}


def kept(verdicts) -> bool:
    return all(v.passed for v in verdicts) and verdicts[-1].stage == "visual"
