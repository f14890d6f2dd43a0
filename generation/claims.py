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

    def by_check(self, check: str) -> list[Claim]:
        return [c for c in self.claims if c.check == check]


def _patient(side: str, phrase: str) -> Claim:
    def why(r: Mapping) -> str:
        actual = r["spatial"]["patient_side"]
        if actual is None:
            return f"'{phrase}': this image has no patient side (2D source)"
        return f"'{phrase}': the target is on the patient's {actual}"

    return Claim("spatial", phrase, lambda r: r["spatial"]["patient_side"] == side, why)


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
    """Lower-cased query text whose matched spans are blanked so no word is read twice."""

    def __init__(self, text: str):
        self.text = text.lower().replace("’", "'")

    def take(self, pattern: str) -> list[re.Match]:
        found = list(re.finditer(pattern, self.text))
        for m in found:
            self.text = self.text[: m.start()] + " " * (m.end() - m.start()) + self.text[m.end() :]
        return found


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
_LOCATION_WORD = r"\b(upper|top|lower|bottom|left|right|center|centre|middle|central)\b"
_CENTER = {"center", "centre", "middle", "central"}
_VERTICAL = {"upper": "upper", "top": "upper", "lower": "lower", "bottom": "lower"}


def _words(mapping: Mapping[str, object]) -> str:
    return "|".join(sorted(map(re.escape, mapping), key=len, reverse=True))


def _location_claims(text: _Text) -> tuple[list[Claim], bool]:
    """Grid/side words left in the text, grouped into phrases like "upper left" or "center"."""
    matches = text.take(_LOCATION_WORD)
    groups: list[list[re.Match]] = []
    for m in matches:
        if groups and re.fullmatch(r"[\s-]*", text.text[groups[-1][-1].end() : m.start()]):
            groups[-1].append(m)
        else:
            groups.append([m])
    claims: list[Claim] = []
    horizontal_used = False
    for group in groups:
        words = [m.group(1) for m in group]
        phrase = " ".join(words)
        sides = [w for w in words if w in ("left", "right")]
        levels = [_VERTICAL[w] for w in words if w in _VERTICAL]
        centre = any(w in _CENTER for w in words)
        horizontal_used |= bool(sides)
        claims += [_image_side(s, phrase) for s in sides]
        claims += [_image_height(v, phrase) for v in levels]
        if centre and sides and not levels:
            claims.append(_grid("grid_row", "middle", phrase))
        elif centre and levels and not sides:
            claims.append(_grid("grid_col", "center", phrase))
        elif centre and not sides and not levels:
            claims.append(_grid("grid_cell", "center", phrase))
    return claims, horizontal_used


def parse(query: str, structures: Mapping[str, str]) -> Parsed:
    """The claims of ``query``; ``structures`` maps structure terms (lower case) to the names
    used in a record's ``relations`` (label names and context structures such as "brain")."""
    text = _Text(query)
    claims: list[Claim] = []
    problems: list[tuple[str, str]] = []
    for m in text.take(rf"\bpatient'?s'?\s+{_SIDE}\b") + text.take(
        rf"\b{_SIDE}(?:\s+side)?\s+of\s+the\s+patient\b"
    ):
        claims.append(_patient(m.group(1), m.group(0)))
    needs_anchor = False
    for m in text.take(rf"\b(?:farthest|furthest)\s+(?:to\s+the\s+)?{_SIDE}\b"):
        claims.append(_relation(f"{m.group(1)}most", m.group(0)))
        needs_anchor = True
    for m in text.take(r"\b(higher|upper|lower)\s+(?:one\s+)?of\s+the\b"):
        flag = "lowermost" if m.group(1) == "lower" else "uppermost"
        claims.append(_relation(flag, m.group(0)))
    ordinals = _words(vocab.ORDINALS)
    for m in text.take(rf"\b({ordinals})[\s-]+(largest|biggest|smallest)\b"):
        claims.append(_rank(vocab.ORDINALS[m.group(1)], m.group(2) != "smallest", m.group(0)))
    for m in text.take(rf"\b({_words(_SUPERLATIVES)})\b"):
        flag = _SUPERLATIVES[m.group(1)]
        needs_anchor |= flag in ("leftmost", "rightmost")
        claims.append(_relation(flag, m.group(0)))
    numbers = _words(vocab.NUMBER_WORDS)
    for m in text.take(rf"\b(?:of|among|between)\s+(?:the\s+|all\s+)?({numbers})\b"):
        claims.append(_count(vocab.NUMBER_WORDS[m.group(1)], m.group(0)))
    for m in text.take(r"\b(only|single|sole|solitary)\b"):
        claims.append(_count(1, m.group(0)))
    if structures:
        terms = _words({f"{t}s": n for t, n in structures.items()} | dict(structures))
        kinds = {
            "inside": r"inside|within|enclosed by|surrounded by",
            "adjacent_to": r"next to|adjacent to|beside|bordering|alongside|touching|abutting",
            "contains": r"containing|surrounding|enclosing",
        }
        for kind, verbs in kinds.items():
            for m in text.take(rf"\b(?:{verbs})\s+(?:the\s+|a\s+|an\s+)?({terms})\b"):
                name = structures.get(m.group(1)) or structures[m.group(1)[:-1]]
                claims.append(_structure(kind, name, m.group(0)))
    for m in text.take(rf"\b({_words(vocab.SIZE_WORDS)})\b"):
        claims.append(_size(m.group(1)))
    for m in text.take(rf"\b({_words(_SHAPES)})\b"):
        claims.append(_shape(m.group(1), _SHAPES[m.group(1)]))
    for m in text.take(rf"\b({_words(_ORIENTATIONS)})\b"):
        claims.append(_orientation(m.group(1), _ORIENTATIONS[m.group(1)]))
    location, horizontal_used = _location_claims(text)
    claims += location
    if (horizontal_used or needs_anchor) and not ANCHOR.search(query):
        problems.append(
            (
                "spatial",
                "left/right without saying whose: write 'of the image' or 'the patient's'",
            )
        )
    return Parsed(claims, problems)


def singles_out(parsed: Parsed, target: Mapping, siblings: list[Mapping]) -> tuple[bool, str]:
    """Whether the claims hold for the target and for no other candidate of its label."""
    if target["num_candidates"] <= 1:
        return True, "only candidate of its label in the image"
    others = [s for s in siblings if s["label"] == target["label"] and s["id"] != target["id"]]
    if len(others) != target["num_candidates"] - 1:
        return False, (
            f"cannot check: {target['num_candidates']} candidates recorded, {len(others) + 1} known"
        )
    also = [s["id"] for s in others if all(c.holds(s) for c in parsed.claims)]
    if also:
        return False, (
            f"ambiguous: the query also fits {len(also)} other {target['label']} "
            f"candidate(s) of {target['num_candidates']}"
        )
    return True, f"singles out 1 of {target['num_candidates']} {target['label']} candidates"
