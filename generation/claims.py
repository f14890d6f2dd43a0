"""Read the factual claims out of a referring expression, as predicates over a target's cues.

A query is checked by what it says: "the larger of the two polyps in the upper left of the image"
claims ``largest``, ``num_candidates == 2``, image-space ``upper`` and ``left``. Each claim is a
predicate over a record (or a sibling's light cues), so the same claims also tell whether the
query singles the target out among the image's other candidates of its label. Words the parser
does not know are not claims; verifying appearance words is the visual judge's job.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from . import vocab

ANCHOR = re.compile(
    r"\b(image|picture|frame|view|scan|slice|screen|display|photo|field of view)\b", re.I
)
_SIDE = r"(left|right)"


@dataclass(frozen=True)
class Claim:
    """One checkable statement of a query: which check it belongs to and when it is true."""

    check: str  # "spatial" | "relational" | "morphology"
    phrase: str
    holds: Callable[[Mapping], bool]
    why_false: Callable[[Mapping], str]


@dataclass
class Parsed:
    claims: list[Claim]
    problems: list[tuple[str, str]]  # (check, reason) that fail whatever the target
    rest: str = ""  # the query (lower case, American spelling) with every claim blanked out

    def by_check(self, check: str) -> list[Claim]:
        return [c for c in self.claims if c.check == check]


def _patient(side: str, phrase: str) -> Claim:
    def why(r: Mapping) -> str:
        actual = r["spatial"]["patient_side"]
        if actual is None and r["spatial"].get("display_convention") == "unoriented":
            return f"'{phrase}': the volume's header records no orientation"
        if actual is None:
            return f"'{phrase}': this image has no patient side (2D source)"
        return f"'{phrase}': the target is on the patient's {actual}"

    return Claim("spatial", phrase, lambda r: r["spatial"]["patient_side"] == side, why)


# Where each anatomical direction lies on a rendered slice (radiological display): axial,
# anterior up; coronal, superior up; sagittal, superior up and anterior on the image's left.
_DIRECTIONS = {
    "axial": {"anterior": ("v", "upper"), "posterior": ("v", "lower")},
    "coronal": {"superior": ("v", "upper"), "inferior": ("v", "lower")},
    "sagittal": {
        "superior": ("v", "upper"),
        "inferior": ("v", "lower"),
        "anterior": ("h", "left"),
        "posterior": ("h", "right"),
    },
}


def _direction(word: str, phrase: str) -> Claim:
    """ "anterior", "posterior", "superior", "inferior": the half of the slice it maps to."""

    def where(r: Mapping) -> str | None:
        axis, value = _DIRECTIONS.get(r.get("slice_axis") or "", {}).get(word, (None, None))
        if axis is None:
            return None
        actual = vocab.vertical(r) if axis == "v" else vocab.horizontal(r)
        return actual if actual != value else None

    def holds(r: Mapping) -> bool:
        radiological = r["spatial"].get("display_convention") == "radiological"
        return (
            radiological
            and word in _DIRECTIONS.get(r.get("slice_axis") or "", {})
            and where(r) is None
        )

    def why(r: Mapping) -> str:
        axis = r.get("slice_axis")
        if not axis:
            return f"'{phrase}': an anatomical direction cannot be checked on a 2D image"
        if r["spatial"].get("display_convention") != "radiological":
            return f"'{phrase}': the volume's header records no orientation"
        if word not in _DIRECTIONS.get(axis, {}):
            return f"'{phrase}': {word} is not a direction within an {axis} slice"
        return f"'{phrase}': the target lies in the {where(r)} part of this {axis} slice"

    return Claim("spatial", phrase, holds, why)


def _relation(flag: str, phrase: str) -> Claim:
    return Claim(
        "relational",
        phrase,
        lambda r: bool(r["relations"][flag]),
        lambda r: (
            f"'{phrase}': the target is not the {flag} of its {r['num_candidates']} "
            f"{r['label']} candidate(s)"
        ),
    )


def _rank(rank: int, from_largest: bool, phrase: str) -> Claim:
    def actual(r: Mapping) -> int:
        size_rank = r["relations"]["size_rank"]
        return size_rank if from_largest else r["num_candidates"] - size_rank + 1

    return Claim(
        "relational",
        phrase,
        lambda r: r["num_candidates"] >= rank and actual(r) == rank,
        lambda r: f"'{phrase}': the target is number {actual(r)} by size of {r['num_candidates']}",
    )


def _count(n: int, phrase: str) -> Claim:
    return Claim(
        "relational",
        phrase,
        lambda r: r["num_candidates"] == n,
        lambda r: f"'{phrase}': the image has {r['num_candidates']} {r['label']} candidate(s)",
    )


def _structure(kind: str, name: str, phrase: str) -> Claim:
    return Claim(
        "relational",
        phrase,
        lambda r: name in r["relations"][kind],
        lambda r: (
            f"'{phrase}': the target's {kind.replace('_', ' ')} relations are "
            f"{list(r['relations'][kind]) or 'none'}"
        ),
    )


def _size(word: str) -> Claim:
    allowed = vocab.SIZE_WORDS[word]
    return Claim(
        "morphology",
        word,
        lambda r: r["shape"]["size_category"] in allowed,
        lambda r: f"'{word}': the target's size category is {r['shape']['size_category']}",
    )


def _shape(word: str, key: str) -> Claim:
    test = vocab.SHAPE_PREDICATES[key]
    return Claim(
        "morphology",
        word,
        lambda r: test(r["shape"]),
        lambda r: (
            f"'{word}': circularity {r['shape']['circularity']:.2f}, elongation "
            f"{r['shape']['elongation']:.2f}, solidity {r['shape']['solidity']:.2f}"
        ),
    )


def _is(check: str, phrase: str, what: str, get: Callable[[Mapping], str], value: str) -> Claim:
    """A claim that one cue equals a value, e.g. the image side is "left"."""
    return Claim(
        check,
        phrase,
        lambda r: get(r) == value,
        lambda r: f"'{phrase}': the target's {what} is {get(r)}",
    )


def _orientation(word: str, key: str) -> Claim:
    return _is("morphology", word, "orientation", lambda r: r["shape"]["orientation"], key)


def _image_side(side: str, phrase: str) -> Claim:
    return _is("spatial", phrase, "side of the image", vocab.horizontal, side)


def _image_height(level: str, phrase: str) -> Claim:
    return _is("spatial", phrase, "height in the image", vocab.vertical, level)


def _grid(field: str, value: str, phrase: str) -> Claim:
    what = field.replace("_", " ")
    return _is("spatial", phrase, what, lambda r: r["spatial"][field], value)


class _Text:
    """Lower-cased query text (American spelling) whose matched spans are blanked so no word is
    read twice; ``original`` keeps every word, at the same positions."""

    def __init__(self, text: str):
        self.original = vocab.american(text.lower().replace("’", "'"))
        self.text = self.original

    def take(self, pattern: str) -> list[re.Match]:
        found = list(re.finditer(pattern, self.text))
        for m in found:
            self.text = self.text[: m.start()] + " " * (m.end() - m.start()) + self.text[m.end() :]
        return found

    def clause(self, m: re.Match) -> str:
        """The clause (between punctuation marks) holding a match, in the original text."""
        start = max(self.original.rfind(p, 0, m.start()) for p in _CLAUSE_MARKS) + 1
        ends = [i for p in _CLAUSE_MARKS if (i := self.original.find(p, m.end())) >= 0]
        return self.original[start : min(ends, default=len(self.original))]


_CLAUSE_MARKS = (",", ";", ":", ".", "(", ")", "!", "?")
# left/right naming a body part ("the left hemisphere") is the patient's side
_ANATOMY = (
    r"hemispheres?|frontal|parietal|temporal|occipital|lobes?|kidneys?|lungs?|breasts?|ovar(?:y|ies)"
    r"|adrenals?|thalam(?:us|i)|cerebellar|cerebellum|ventricles?|orbits?|eyes?|hippocampus|insula"
    r"|hemithorax|basal ganglia|colon|hemicolon|flank|limb|arm|leg|hand|foot|shoulder|hip|knee"
    r"|side\s+of\s+the\s+(?:brain|body|head|chest|abdomen|pelvis|neck)"
)

_SUPERLATIVES = {
    "leftmost": "leftmost",
    "rightmost": "rightmost",
    "uppermost": "uppermost",
    "topmost": "uppermost",
    "highest": "uppermost",
    "lowermost": "lowermost",
    "bottommost": "lowermost",
    "lowest": "lowermost",
    "largest": "largest",
    "biggest": "largest",
    "larger": "largest",
    "bigger": "largest",
    "smallest": "smallest",
    "smaller": "smallest",
}
_SHAPES = {
    "round": "round",
    "rounded": "round",
    "circular": "round",
    "oval": "oval",
    "ovoid": "oval",
    "elliptical": "oval",
    "elongated": "elongated",
    "elongate": "elongated",
    "oblong": "elongated",
    "irregular": "irregular",
    "irregularly": "irregular",
    "lobulated": "irregular",
}
_ORIENTATIONS = {
    "vertical": "vertical",
    "vertically": "vertical",
    "horizontal": "horizontal",
    "horizontally": "horizontal",
    "oblique": "oblique",
    "obliquely": "oblique",
    "diagonal": "oblique",
    "diagonally": "oblique",
}
_LOCATION_WORD = r"\b(upper|top|lower|bottom|left|right|center|middle|central)\b"
_CENTER = {"center", "middle", "central"}
_VERTICAL = {"upper": "upper", "top": "upper", "lower": "lower", "bottom": "lower"}


def _words(mapping: Mapping[str, object]) -> str:
    return "|".join(sorted(map(re.escape, mapping), key=len, reverse=True))


_ORDINAL_WORDS = _words(vocab.ORDINALS)
_SUPERLATIVE_WORDS = _words(_SUPERLATIVES)
_NUMBER_WORDS = _words(vocab.NUMBER_WORDS)
_SIZE_WORDS = _words(vocab.SIZE_WORDS)
_SHAPE_WORDS = _words(_SHAPES)
_ORIENTATION_WORDS = _words(_ORIENTATIONS)


@lru_cache(maxsize=64)
def _structure_words(items: tuple[tuple[str, str], ...]) -> tuple[str, dict[str, str]]:
    """The alternation of structure terms and their plurals, and plural -> term (built once per
    set of structures, not per query)."""
    singular = {vocab.plural(term): term for term, _ in items}
    return _words({**singular, **dict(items)}), singular


def _edge_claims(text: _Text) -> list[tuple[Claim, re.Match]]:
    """Phrases that name the outer third of the image, checked against the 3x3 grid:
    "near the top", "at the bottom", "near the left edge", "in the upper left corner"."""
    out = []
    for m in text.take(r"\b(upper|top|lower|bottom)?[\s-]*(left|right)?[\s-]*corner\b"):
        row = _VERTICAL.get(m.group(1) or "")
        if row and m.group(2):
            out.append((_grid("grid_cell", f"{row} {m.group(2)}", m.group(0).strip()), m))
        elif row:
            out.append((_grid("grid_row", row, m.group(0).strip()), m))
        elif m.group(2):
            out.append((_grid("grid_col", m.group(2), m.group(0).strip()), m))
    near = r"\b(?:near|at|close to|along|by)\s+the\s+(?:very\s+)?"
    for m in text.take(rf"{near}(top|bottom)(?:\s+(?:edge|border|margin))?\b"):
        out.append((_grid("grid_row", _VERTICAL[m.group(1)], m.group(0)), m))
    for m in text.take(rf"{near}(left|right)\s+(?:edge|border|margin)\b"):
        out.append((_grid("grid_col", m.group(1), m.group(0)), m))
    return out


def _location_claims(text: _Text) -> list[tuple[Claim, re.Match]]:
    """Grid/side words left in the text, grouped into phrases like "upper left" or "center";
    each claim with the match of its phrase (where its left/right must be anchored)."""
    matches = text.take(_LOCATION_WORD)
    groups: list[list[re.Match]] = []
    for m in matches:
        if groups and re.fullmatch(r"[\s-]*", text.text[groups[-1][-1].end() : m.start()]):
            groups[-1].append(m)
        else:
            groups.append([m])
    claims: list[tuple[Claim, re.Match]] = []
    for group in groups:
        words = [m.group(1) for m in group]
        phrase = " ".join(words)
        sides = [w for w in words if w in ("left", "right")]
        levels = [_VERTICAL[w] for w in words if w in _VERTICAL]
        centre = any(w in _CENTER for w in words)
        found = [_image_side(s, phrase) for s in sides]
        found += [_image_height(v, phrase) for v in levels]
        if sides and levels:  # "upper left": a quadrant, so not the central cell
            found.append(_not_central(phrase))
        if centre and sides and not levels:
            found.append(_grid("grid_row", "middle", phrase))
        elif centre and levels and not sides:
            found.append(_grid("grid_col", "center", phrase))
        elif centre and not sides and not levels:
            found.append(_grid("grid_cell", "center", phrase))
        claims += [(claim, group[0]) for claim in found]
    return claims


def _not_central(phrase: str) -> Claim:
    return Claim(
        "spatial",
        phrase,
        lambda r: r["spatial"]["grid_cell"] != "center",
        lambda r: f"'{phrase}': the target is in the center cell of the image",
    )


def parse(query: str, structures: Mapping[str, str]) -> Parsed:
    """The claims of ``query``; ``structures`` maps structure terms (lower case, American
    spelling) to the names used in a record's ``relations`` (label names and context structures
    such as "brain")."""
    text = _Text(query)
    claims: list[Claim] = []
    sided: list[re.Match] = []  # image left/right words: each must be anchored to the image
    for m in text.take(rf"\bpatient'?s'?\s+{_SIDE}\b") + text.take(
        rf"\b{_SIDE}(?:\s+side)?\s+of\s+the\s+patient\b"
    ):
        claims.append(_patient(m.group(1), m.group(0)))
    for m in text.take(rf"\b{_SIDE}(?:-sided|\s+(?:{_ANATOMY})\b)"):
        claims.append(_patient(m.group(1), m.group(0)))
    for m in text.take(r"\b(anterior|posterior|superior|inferior)(?:ly)?\b"):
        claims.append(_direction(m.group(1), m.group(0)))
    for m in text.take(rf"\b(?:farthest|furthest)\s+(?:to\s+the\s+)?{_SIDE}\b"):
        claims.append(_relation(f"{m.group(1)}most", m.group(0)))
        sided.append(m)
    for m in text.take(r"\b(higher|upper|lower)\s+(?:one\s+)?of\s+the\b"):
        flag = "lowermost" if m.group(1) == "lower" else "uppermost"
        claims.append(_relation(flag, m.group(0)))
    for m in text.take(rf"\b({_ORDINAL_WORDS})[\s-]+(largest|biggest|smallest)\b"):
        claims.append(_rank(vocab.ORDINALS[m.group(1)], m.group(2) != "smallest", m.group(0)))
    for m in text.take(rf"\b({_SUPERLATIVE_WORDS})\b"):
        flag = _SUPERLATIVES[m.group(1)]
        if flag in ("leftmost", "rightmost"):
            sided.append(m)
        claims.append(_relation(flag, m.group(0)))
    for m in text.take(rf"\b(?:of|among|between)\s+(?:the\s+|all\s+)?({_NUMBER_WORDS})\b"):
        claims.append(_count(vocab.NUMBER_WORDS[m.group(1)], m.group(0)))
    for m in text.take(r"\b(only|single|sole|solitary)\b"):
        claims.append(_count(1, m.group(0)))
    if structures:
        terms, singular = _structure_words(tuple(sorted(structures.items())))
        kinds = {
            "inside": r"inside|within|enclosed by|surrounded by",
            "adjacent_to": r"next to|adjacent to|beside|bordering|alongside|touching|abutting",
            "contains": r"containing|surrounding|enclosing",
        }
        for kind, verbs in kinds.items():
            for m in text.take(rf"\b(?:{verbs})\s+(?:the\s+|a\s+|an\s+)?({terms})\b"):
                name = structures[singular.get(m.group(1), m.group(1))]
                claims.append(_structure(kind, name, m.group(0)))
    for m in text.take(rf"\b({_SIZE_WORDS})\b"):
        claims.append(_size(m.group(1)))
    for m in text.take(rf"\b({_SHAPE_WORDS})\b"):
        claims.append(_shape(m.group(1), _SHAPES[m.group(1)]))
    for m in text.take(rf"\b({_ORIENTATION_WORDS})\b"):
        claims.append(_orientation(m.group(1), _ORIENTATIONS[m.group(1)]))
    for claim, m in _edge_claims(text) + _location_claims(text):
        claims.append(claim)
        if re.search(rf"\b{_SIDE}\b", m.group(0)):
            sided.append(m)
    problems: list[tuple[str, str]] = []
    loose = [m.group(0).strip() for m in sided if not ANCHOR.search(text.clause(m))]
    if loose:
        problems.append(
            (
                "spatial",
                f"'{loose[0]}' does not say whose left/right: write 'of the image' (in the same "
                "phrase) or 'the patient's'",
            )
        )
    return Parsed(claims, problems, text.text)


def singles_out(
    parsed: Parsed, target: Mapping, siblings: list[Mapping], *, any_label: bool = False
) -> tuple[bool, str]:
    """Whether the claims hold for the target and for no other candidate of its label; with
    ``any_label`` (the query names no label, only "the lesion"), for no other target at all."""
    if any_label:
        n, what = target["num_targets_in_image"], "target"
        others = [s for s in siblings if s["id"] != target["id"]]
    else:
        n, what = target["num_candidates"], f"{target['label']} candidate"
        others = [s for s in siblings if s["label"] == target["label"] and s["id"] != target["id"]]
    if n <= 1:
        return True, f"only {what} in the image"
    if len(others) != n - 1:
        return False, f"cannot check: {n} {what}s recorded, {len(others) + 1} known"
    also = [s["id"] for s in others if all(c.holds(s) for c in parsed.claims)]
    if also:
        return False, f"ambiguous: the query also fits {len(also)} other {what}(s) of {n}"
    return True, f"singles out 1 of {n} {what}s"
