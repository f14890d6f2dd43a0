"""The words a query may use about a target, each tied to the cue that makes it true.

The template generator picks words with these predicates and the verifier checks the words it
finds in any query (template or VLM) with the same predicates, so a word means one thing
everywhere. Thresholds are documented in docs/generation.md.
"""

from __future__ import annotations

from collections.abc import Mapping

# A centroid this far (as a fraction of the image size) from the midline is off-centre; matches
# medground_hf.cues.SIDE_DEAD_BAND for the horizontal axis.
DEAD_BAND = 0.05

# Shape words: circularity/elongation/solidity come from medground_hf.geometry.shape_cues.
ROUND_MIN_CIRCULARITY = 0.75
ROUND_MAX_ELONGATION = 0.3
OVAL_ELONGATION = (0.15, 0.6)
ELONGATED_MIN_ELONGATION = 0.35
IRREGULAR_MAX_SOLIDITY = 0.9
IRREGULAR_MAX_CIRCULARITY = 0.6

# Size word -> size categories (medground_hf.geometry.SIZE_CATEGORIES) it is true for.
SIZE_WORDS: dict[str, frozenset[str]] = {
    "tiny": frozenset({"tiny"}),
    "very small": frozenset({"tiny"}),
    "small": frozenset({"tiny", "small"}),
    "medium-sized": frozenset({"medium"}),
    "moderately sized": frozenset({"medium"}),
    "large": frozenset({"large"}),
    "very large": frozenset({"large"}),
}
# The words the template generator uses per size category (all true by SIZE_WORDS).
SIZE_PHRASES: dict[str, tuple[str, ...]] = {
    "tiny": ("tiny", "very small"),
    "small": ("small",),
    "medium": ("medium-sized", "moderately sized"),
    "large": ("large", "very large"),
}

NUMBER_WORDS = {
    "two": 2,
    "both": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5}
COUNT_WORDS = {v: k for k, v in NUMBER_WORDS.items() if k != "both"}
ORDINAL_WORDS = {v: k for k, v in ORDINALS.items()}

# Generic nouns a query may use for the target instead of its label's clinical terms.
GENERIC_NOUNS = (
    "lesion",
    "finding",
    "structure",
    "region",
    "area",
    "abnormality",
    "growth",
    "mass",
    "object",
)

# Modality words: a query naming another modality than the record's is a prior violation.
MODALITY_WORDS: dict[str, tuple[str, ...]] = {
    "endoscopy": ("endoscopy", "endoscopic", "colonoscopy", "colonoscopic"),
    "ultrasound": ("ultrasound", "sonography", "sonographic", "sonogram", "ultrasonographic"),
    "mri": ("mri", "magnetic resonance", "flair", "t1-weighted", "t2-weighted"),
    "ct": ("ct scan", "computed tomography"),
    "x-ray": ("x-ray", "radiograph", "radiographic"),
}
# How the templates call an image of each modality.
MODALITY_NOUNS: dict[str, str] = {
    "endoscopy": "endoscopic image",
    "ultrasound": "ultrasound image",
    "mri": "MRI slice",
    "ct": "CT slice",
    "x-ray": "radiograph",
}


def modality_key(modality: str) -> str | None:
    """The MODALITY_WORDS key of a record's modality string (e.g. ``"MRI (FLAIR)"`` -> mri)."""
    text = modality.lower()
    for key, words in MODALITY_WORDS.items():
        if key in text or any(word in text for word in words):
            return key
    return None


def horizontal(record: Mapping) -> str:
    """Image-space side of the centroid: left / right / center (the record's image_side)."""
    return record["spatial"]["image_side"]


def vertical(record: Mapping) -> str:
    """Image-space height of the centroid: upper / lower / middle, with the same dead band."""
    offset = record["centroid_xy"][1] / record["height"] - 0.5
    if abs(offset) <= DEAD_BAND:
        return "middle"
    return "upper" if offset < 0 else "lower"


def is_round(shape: Mapping) -> bool:
    return (
        shape["circularity"] >= ROUND_MIN_CIRCULARITY and shape["elongation"] < ROUND_MAX_ELONGATION
    )


def is_oval(shape: Mapping) -> bool:
    low, high = OVAL_ELONGATION
    return low <= shape["elongation"] < high and shape["solidity"] >= IRREGULAR_MAX_SOLIDITY


def is_elongated(shape: Mapping) -> bool:
    return shape["elongation"] >= ELONGATED_MIN_ELONGATION


def is_irregular(shape: Mapping) -> bool:
    return (
        shape["solidity"] < IRREGULAR_MAX_SOLIDITY
        or shape["circularity"] < IRREGULAR_MAX_CIRCULARITY
    )


# Shape word -> predicate over record["shape"].
SHAPE_PREDICATES = {
    "round": is_round,
    "oval": is_oval,
    "elongated": is_elongated,
    "irregular": is_irregular,
}


def plural(term: str) -> str:
    return term if term.endswith("s") else f"{term}s"
