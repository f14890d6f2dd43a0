"""The words a query may use about a target, each tied to the cue that makes it true.

The template generator picks words with these predicates and the verifier checks the words it
finds in any query (template or VLM) with the same predicates, so a word means one thing
everywhere. Thresholds are documented in the README (Verification stages).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import yaml

from medground_hf import margins
from medground_hf.source import LabelSpec

# Shape words: circularity/elongation/solidity come from medground_hf.geometry.shape_cues.
ROUND_MIN_CIRCULARITY = 0.75
ROUND_MAX_ELONGATION = 0.3
OVAL_ELONGATION = (0.15, 0.6)
ELONGATED_MIN_ELONGATION = 0.35
IRREGULAR_MAX_SOLIDITY = 0.9
IRREGULAR_MAX_CIRCULARITY = 0.6
# A crescent is clearly concave: a low solidity and a low circularity together.
CRESCENT_MAX_SOLIDITY = 0.75
CRESCENT_MAX_CIRCULARITY = 0.5


def size_phrases(record: Mapping, spec: LabelSpec) -> list[str]:
    """The size wording the verifier accepts for a target: its clinical size class where the
    pixel spacing is known and the label declares classes (``LabelSpec.size_classes``; none for
    a biometric label), and the share of the image it fills when one of the image-relative
    phrases holds (docs/viewer-rules.md Z1, Z2)."""
    out = list(spec.size_words(margins.largest_dimension_mm(record)))
    share = margins.image_share(record)
    if share >= margins.MOST_OF_IMAGE:
        out.append("filling most of the image")
    elif share >= margins.LARGE_PART_OF_IMAGE:
        out.append("occupying a large part of the image")
    elif share <= margins.SMALL_PART_OF_IMAGE:
        out.append("occupying a small part of the image")
    return out


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


# ---- lexicons: word lists as versioned data files (generation/lexicons/<name>-<version>.yaml)
LEXICON_VERSION = "v1"
LEXICONS = ("neutral", "claims", "organs", "modalities", "appearance")


class _WordLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when there
    """YAML without YAML 1.1 booleans: "on", "no", "yes" are words in a lexicon."""


_WordLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@cache
def lexicon(name: str) -> dict:
    """One lexicon file, parsed (``name`` in :data:`LEXICONS`)."""
    path = f"lexicons/{name}-{LEXICON_VERSION}.yaml"
    text = resources.files("medground_hf.generation").joinpath(path).read_text()
    data = yaml.load(text, Loader=_WordLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict) or data.get("version") != f"{name}-{LEXICON_VERSION}":
        raise ValueError(f"{path}: missing or wrong 'version' (expected {name}-{LEXICON_VERSION})")
    return data


def lexicon_versions() -> list[str]:
    """The versions of every lexicon, as verdicts and manifests record them."""
    return [lexicon(name)["version"] for name in LEXICONS]


def _phrases(items: object) -> list[str]:
    return [american(str(w).lower()) for w in items or ()]


@lru_cache(maxsize=1)
def neutral_words() -> frozenset[str]:
    """Words and phrases that claim nothing (articles, prepositions, anchors, generic nouns)."""
    data = lexicon("neutral")
    keys = ("function_words", "anchors", "verbs", "generic_nouns")
    return frozenset(w for key in keys for w in _phrases(data[key]))


@lru_cache(maxsize=1)
def anchors() -> frozenset[str]:
    """What a query may call the picture ("image", "frame", "slice", ...)."""
    return frozenset(_phrases(lexicon("neutral")["anchors"]))


@lru_cache(maxsize=1)
def generic_nouns() -> frozenset[str]:
    """Nouns for the target that do not name its label ("lesion", "finding", ...)."""
    return frozenset(_phrases(lexicon("neutral")["generic_nouns"]))


@lru_cache(maxsize=1)
def appearance_words() -> frozenset[str]:
    """Appearance words only a VLM judge can confirm."""
    return frozenset(_phrases(lexicon("appearance")["words"]))


# ---- organs ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def organ_groups() -> dict[str, dict]:
    """Group -> {"words", "within", "seen_with"} from the organ lexicon."""
    groups = lexicon("organs")["groups"]
    return {
        name: {
            "words": _phrases(g.get("words")),
            "within": tuple(g.get("within") or ()),
            "seen_with": tuple(g.get("seen_with") or ()),
        }
        for name, g in groups.items()
    }


@lru_cache(maxsize=1)
def organ_words() -> dict[str, frozenset[str]]:
    """Organ word or phrase (and its plural) -> the groups it names."""
    out: dict[str, set[str]] = {}
    for name, group in organ_groups().items():
        for word in group["words"]:
            for form in (word, word + "s"):
                out.setdefault(form, set()).add(name)
    return {w: frozenset(g) for w, g in out.items()}


def _closure(groups: set[str], key: str) -> set[str]:
    seen, todo = set(groups), list(groups)
    table = organ_groups()
    while todo:
        for nxt in table[todo.pop()][key]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@lru_cache(maxsize=1024)
def organs_in(text: str) -> frozenset[str]:
    """The organ groups ``text`` (lower case, American spelling) names, longest phrase first."""
    words = organ_words()
    return frozenset(g for m in alternation(tuple(words)).finditer(text) for g in words[m.group(1)])


def organ_verdict(named: frozenset[str], shown: set[str]) -> str:
    """How an organ word naming the groups ``named`` relates to an image showing ``shown``:
    "consistent" (a shown group, a region holding one, or one seen with it), "subregion"
    (a part of a shown organ: where in it is unverifiable), "wrong", or "unknown" (the image's
    body part is unknown)."""
    if not shown:
        return "unknown"
    around = _closure(shown, "within")
    around |= {g for s in shown for g in organ_groups()[s]["seen_with"]}
    if named & around:
        return "consistent"
    if any(_closure({g}, "within") & shown for g in named):
        return "subregion"
    return "wrong"


# ---- modalities ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModalityWord:
    """What a technique or sequence word claims about the rendering."""

    technique: str
    sequence: str | None = None
    appearance: bool = False


@lru_cache(maxsize=1)
def modality_words() -> dict[str, ModalityWord]:
    """Technique/sequence word or phrase -> what it claims."""
    data = lexicon("modalities")
    out: dict[str, ModalityWord] = {}
    for key, entry in data["techniques"].items():
        for word in _phrases([key, *entry["words"]]):
            out[word] = ModalityWord(key)
    for key, entry in data["sequences"].items():
        sequence = entry.get("sequence", key)
        claim = ModalityWord("mri", sequence, bool(entry.get("appearance")))
        for word in _phrases(entry["words"]):
            out[word] = claim
    return out


@lru_cache(maxsize=256)
def rendered(modality: str) -> tuple[ModalityWord, ...]:
    """The technique (and MRI sequence, when known) of each panel of a record's modality
    string: ``"MRI FLAIR | MRI T1c"`` -> (mri/flair, mri/t1c); ``"endoscopy"`` -> (endoscopy)."""
    words = modality_words()
    pattern = alternation(tuple(words))
    panels = []
    for part in american(modality.lower()).split("|"):
        found = [words[lookup(words, m.group(1))] for m in pattern.finditer(part)]
        technique = next((w.technique for w in found), None)
        sequence = next((w.sequence for w in found if w.sequence), None)
        if technique:
            panels.append(ModalityWord(technique, sequence))
    return tuple(panels)


def alternation_body(words: Iterable[str]) -> str:
    """Phrases as one regex alternation (longest first; a space matches any spaces, a hyphen a
    hyphen, a space or nothing)."""
    return _alternation_body(frozenset(words))


@lru_cache(maxsize=1024)
def _alternation_body(words: frozenset[str]) -> str:
    # the parser asks for the same few word sets for every query: escaped once
    parts = sorted(words, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+").replace(r"\-", r"[\s-]?") for w in parts)


@lru_cache(maxsize=256)
def alternation(words: tuple[str, ...]) -> re.Pattern:
    """Whole words or phrases of ``words`` (group 1), longest first."""
    return re.compile(rf"(?<![\w-])({alternation_body(words)})(?![\w-])")


def lookup(table: Mapping[str, object], found: str) -> str:
    """The table key of a match that may differ from it in spacing or hyphenation."""
    if found in table:
        return found
    return _flat_keys(tuple(table))[re.sub(r"[\s-]+", "", found)]


@lru_cache(maxsize=64)
def _flat_keys(keys: tuple[str, ...]) -> dict[str, str]:
    return {re.sub(r"[\s-]+", "", k): k for k in keys}


@lru_cache(maxsize=256)
def modality_key(modality: str) -> str | None:
    """The technique of a record's modality string (e.g. ``"MRI (FLAIR)"`` -> mri)."""
    panels = rendered(modality)
    return panels[0].technique if panels else None


# How the templates call an image of each modality.
MODALITY_NOUNS: dict[str, str] = dict(lexicon("modalities")["nouns"])


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


def is_crescent(shape: Mapping) -> bool:
    return (
        shape["solidity"] <= CRESCENT_MAX_SOLIDITY
        and shape["circularity"] <= CRESCENT_MAX_CIRCULARITY
    )


# Shape word -> predicate over record["shape"] (the templates pick from the first four).
SHAPE_PREDICATES = {
    "round": is_round,
    "oval": is_oval,
    "elongated": is_elongated,
    "irregular": is_irregular,
}
SHAPE_RULES = {**SHAPE_PREDICATES, "crescent": is_crescent}


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


# Latin plurals of clinical nouns ("enhancing focus" -> "enhancing foci").
_IRREGULAR = {
    "focus": "foci",
    "nucleus": "nuclei",
    "calculus": "calculi",
    "metastasis": "metastases",
}
_HEAD_OF = re.compile(r"^(region|area|focus|piece|fragment|part|component)(\s+of\s+.+)$")


@lru_cache(maxsize=1024)
def plural(term: str) -> str:
    """The plural of a clinical term: "polyps", "masses", "abnormalities", "enhancing foci",
    "regions of necrosis" (of a mass noun, and of "region of necrosis")."""
    head = _HEAD_OF.match(term)
    if head:
        return f"{plural(head.group(1))}{head.group(2)}"
    if not countable(term):
        return f"regions of {term}"
    last = term.split()[-1]
    if last.lower() in _IRREGULAR:
        return term[: -len(last)] + _IRREGULAR[last.lower()]
    if re.search(r"(s|x|z|ch|sh)$", term):
        return f"{term}es"
    if re.search(r"[^aeiou]y$", term):
        return f"{term[:-1]}ies"
    return f"{term}s"
