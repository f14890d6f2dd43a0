"""The words a query may use about a target, each tied to the cue that makes it true.

The template generator picks words with these predicates and the verifier checks the words it
finds in any query (template or VLM) with the same predicates, so a word means one thing
everywhere. Thresholds are documented in the README (Verification stages).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from medground_hf.cues import half

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
    "mri": ("mri", "mr", "magnetic resonance", "flair", "t1-weighted", "t2-weighted"),
    "ct": ("ct", "computed tomography"),
    "x-ray": ("x-ray", "radiograph", "radiographic"),
    "pet": ("pet", "positron emission"),
}
# Organs a query may name, by group. A query naming an organ the image does not show (a
# "polyp in the stomach" on a colonoscopy) fails the anatomy prior; the record's body part, its
# label terms and its relations' structures say which groups the image shows.
ORGANS: dict[str, tuple[str, ...]] = {
    "colon": ("colon", "colonic", "large intestine", "rectum", "rectal", "sigmoid", "cecum"),
    "small intestine": ("small intestine", "small bowel", "duodenum", "duodenal", "ileum"),
    "stomach": ("stomach", "gastric"),
    "esophagus": ("esophagus", "esophageal"),
    "brain": ("brain", "cerebral", "cerebellum", "cerebellar", "intracranial"),
    "head": ("head", "skull", "cranium", "cranial"),
    "liver": ("liver", "hepatic"),
    "kidney": ("kidney", "renal"),
    "lung": ("lung", "pulmonary"),
    "heart": ("heart", "cardiac"),
    "pancreas": ("pancreas", "pancreatic"),
    "spleen": ("spleen", "splenic"),
    "prostate": ("prostate", "prostatic"),
    "bladder": ("bladder",),
    "uterus": ("uterus", "uterine", "womb"),
    "breast": ("breast",),
    "thyroid": ("thyroid",),
}
# Groups that are seen together: the brain is inside the head.
ORGANS_SEEN_WITH = {"brain": {"head"}, "head": {"brain"}}


_ORGAN_PATTERNS = {
    group: re.compile(rf"(?<![\w-])({'|'.join(map(re.escape, words))})s?\b")
    for group, words in ORGANS.items()
}


def organs_in(text: str) -> set[str]:
    """The organ groups ``text`` (lower case, American spelling) names."""
    return {group for group, pattern in _ORGAN_PATTERNS.items() if pattern.search(text)}


# How the templates call an image of each modality.
MODALITY_NOUNS: dict[str, str] = {
    "endoscopy": "endoscopic image",
    "ultrasound": "ultrasound image",
    "mri": "MRI slice",
    "ct": "CT slice",
    "x-ray": "radiograph",
}


@lru_cache(maxsize=256)
def modality_key(modality: str) -> str | None:
    """The MODALITY_WORDS key of a record's modality string (e.g. ``"MRI (FLAIR)"`` -> mri);
    whole words only, so "ct" is not found inside another word."""
    text = american(modality.lower())
    for key, words in MODALITY_WORDS.items():
        if any(re.search(rf"\b{re.escape(w)}\b", text) for w in (key, *words)):
            return key
    return None


# British spellings -> American ones. The verifier reads every query in American spelling (so
# "tumour" and "tumor" are the same word to it); the templates write each query in one dialect.
_BRITISH = {
    "tumour": "tumor",
    "oedema": "edema",
    "oedematous": "edematous",
    "haemorrhage": "hemorrhage",
    "haemorrhagic": "hemorrhagic",
    "haematoma": "hematoma",
    "ischaemia": "ischemia",
    "ischaemic": "ischemic",
    "oesophagus": "esophagus",
    "oesophageal": "esophageal",
    "foetal": "fetal",
    "foetus": "fetus",
    "centre": "center",
    "colour": "color",
    "grey": "gray",
}
_AMERICAN = {v: k for k, v in _BRITISH.items()}


_SPELLINGS = {
    id(table): re.compile(r"\b(" + "|".join(table) + r")(s?)\b", re.I)
    for table in (_BRITISH, _AMERICAN)
}
_MARKER = re.compile(r"\b(" + "|".join([*_BRITISH, *_AMERICAN]) + r")s?\b", re.I)


def _respell(text: str, table: Mapping[str, str]) -> str:
    def swap(m: re.Match) -> str:
        word = m.group(1)
        new = table[word.lower()]
        return (new.capitalize() if word[0].isupper() else new) + m.group(2)

    return _SPELLINGS[id(table)].sub(swap, text)


def american(text: str) -> str:
    """``text`` in American spelling (what the verifier reads)."""
    return _respell(text, _BRITISH)


def dialect(text: str) -> str | None:
    """``"british"`` or ``"american"`` by the first spelling marker in ``text``, else None."""
    m = _MARKER.search(text)
    if not m:
        return None
    return "british" if m.group(1).lower() in _BRITISH else "american"


def in_dialect(text: str, which: str | None) -> str:
    """``text`` spelled consistently in one dialect (``None`` leaves it as it is)."""
    if which == "british":
        return _respell(text, _AMERICAN)
    return american(text) if which == "american" else text


def horizontal(record: Mapping) -> str:
    """Image-space side of the centroid: left / right / center (the record's image_side)."""
    return record["spatial"]["image_side"]


def vertical(record: Mapping) -> str:
    """Image-space height of the centroid: upper / lower / middle, with the image side's dead
    band (:func:`medground_hf.cues.half`)."""
    return half(record["centroid_xy"][1], record["height"], ("upper", "middle", "lower"))


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


# Head nouns that do not count ("two necrosis"): a plural needs "regions of ...".
MASS_NOUNS = frozenset(
    {"necrosis", "edema", "oedema", "hyperintensity", "hypointensity", "tissue", "fluid"}
)
_POSTMODIFIED = re.compile(r"\s(around|with|of|in|within|near)\s")


@lru_cache(maxsize=1024)
def postmodified(term: str) -> bool:
    """Whether ``term`` ends in a phrase of its own ("FLAIR hyperintensity around the tumour")."""
    return _POSTMODIFIED.search(term) is not None


@lru_cache(maxsize=1024)
def countable(term: str) -> bool:
    """Whether ``term`` makes a plain plural: a count noun at its end, no trailing phrase."""
    return term.split()[-1].lower() not in MASS_NOUNS and not postmodified(term)


@lru_cache(maxsize=1024)
def plural(term: str) -> str:
    """The plural of a clinical term: "polyps", "masses", "abnormalities", "regions of necrosis"."""
    if not countable(term):
        return f"regions of {term}"
    if re.search(r"(s|x|z|ch|sh)$", term):
        return f"{term}es"
    if re.search(r"[^aeiou]y$", term):
        return f"{term[:-1]}ies"
    return f"{term}s"
