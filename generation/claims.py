"""Read what a referring expression claims, so every claim can be checked (fail closed).

A query is read phrase by phrase: structure terms, organs and modalities are recognised first,
then negations, then every claim type (position in the image, relations between targets,
counts, sizes, shapes, anatomy), each tied to a rule of :mod:`medground_hf.margins` (the one
definition of what a viewer would agree with). Negation is resolved onto the claims in its
scope ("not on the left" holds only when the target is clearly on the right). What is left
must be neutral words (:func:`.vocab.neutral_words`); anything else is reported by name, so
the verifier can reject what it does not understand instead of ignoring it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

from medground_hf import margins
from medground_hf.source import LabelSpec

from . import vocab

# ---- the image a claim is checked in -----------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """Every target of one image (a record and its siblings). Comparisons are among the
    record's candidates: the targets of its label, or every target when the query names no
    label (``by_label=False``, "the lesion"). ``labels`` give the size classes per label."""

    targets: tuple[Mapping, ...]
    by_label: bool = True
    labels: Mapping[str, LabelSpec] = field(default_factory=dict)

    def candidates(self, r: Mapping) -> list[Mapping]:
        if not self.by_label:
            return list(self.targets)
        return [s for s in self.targets if s["label"] == r["label"]]

    def expected(self, r: Mapping) -> int:
        return r["num_candidates"] if self.by_label else r["num_targets_in_image"]

    def others(self, r: Mapping) -> list[Mapping] | None:
        """The record's other candidates, or None when not all of them are known."""
        found = self.candidates(r)
        if len(found) != self.expected(r):
            return None
        return [s for s in found if s["id"] != r["id"]]

    def of_label(self, r: Mapping, label: str | None) -> list[Mapping] | None:
        """Targets of ``label`` (None: every target) in the image, or None when the image's
        targets are not all known."""
        if len(self.targets) != r["num_targets_in_image"]:
            return None
        return [s for s in self.targets if label is None or s["label"] == label]


Rule = Callable[[Mapping, Scene], bool]


@dataclass(frozen=True)
class Claim:
    """One checkable statement: its rule, the rule of its opposite (what its negation needs;
    None when a negation has no meaning the verifier can check) and how to say why it fails."""

    check: str  # "spatial" | "relational" | "morphology"
    kind: str  # claim type, as docs/verification.md lists them
    phrase: str
    rule: Rule
    opposite: Rule | None
    state: Callable[[Mapping, Scene], str]
    start: int = 0
    negated: bool = False
    end: int = 0

    def holds(self, r: Mapping, scene: Scene) -> bool:
        rule = self.opposite if self.negated else self.rule
        return rule is not None and rule(r, scene)

    def why_false(self, r: Mapping, scene: Scene) -> str:
        return f"'{self.phrase}': {self.state(r, scene)}"


@dataclass
class Parsed:
    """What a query says: its claims, problems that fail it whatever the target (check,
    reason), and the words that are not claims: unknown ones, appearance words (the judge's),
    organs, modalities and structure terms naming the target."""

    claims: list[Claim]
    problems: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    appearance: list[str] = field(default_factory=list)
    organs: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    modalities: list[tuple[str, vocab.ModalityWord]] = field(default_factory=list)
    named: list[tuple[str, str]] = field(default_factory=list)  # (term, structure name)
    generic: list[str] = field(default_factory=list)  # generic nouns naming the target
    rest: str = ""

    def by_check(self, check: str) -> list[Claim]:
        return [c for c in self.claims if c.check == check]


# ---- text: normalised, with recognised terms as tokens and read spans blanked -----------------

_TOKEN_BASE, _TOKEN_PAD = 0xE000, "\uf8ff"
TOKEN = "[\ue000-\uefff]\uf8ff*"


@dataclass(frozen=True)
class Token:
    kind: str  # "struct" | "organ" | "modality"
    text: str
    value: object
    plural: bool = False


class _Text:
    """The query in lower case and American spelling. Recognised terms become one-character
    tokens (padded to their length, so positions never move) and read spans are blanked, so no
    word is read twice; ``original`` keeps every word at the same positions."""

    def __init__(self, text: str):
        clean = text.replace("’", "'").replace("‘", "'").replace("–", ",").replace("—", ",")
        self.original = vocab.american(clean.lower())
        self.text = self.original
        self.tokens: list[Token] = []

    def take(
        self, pattern: str | re.Pattern, when: Callable[[re.Match], bool] | None = None
    ) -> list[re.Match]:
        """The matches of ``pattern`` (those ``when`` accepts), blanked."""
        found = [m for m in re.finditer(pattern, self.text) if when is None or when(m)]
        for m in found:
            self.blank(m.start(), m.end())
        return found

    def blank(self, start: int, end: int) -> None:
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]

    def tokenize(self, phrases: Mapping[str, tuple[str, object, bool]]) -> None:
        """Replace every phrase (longest first) by a token of (kind, value, plural)."""
        if not phrases:
            return
        for m in re.finditer(vocab.alternation(tuple(phrases)), self.text):
            kind, value, plural = phrases[vocab.lookup(phrases, m.group(1))]
            if len(self.tokens) >= 0x1000:
                break
            char = chr(_TOKEN_BASE + len(self.tokens))
            self.tokens.append(Token(kind, m.group(1), value, plural))
            width = m.end() - m.start()
            self.text = (
                self.text[: m.start()] + char + _TOKEN_PAD * (width - 1) + self.text[m.end() :]
            )

    def token(self, text: str) -> Token:
        return self.tokens[ord(text[0]) - _TOKEN_BASE]

    def clause(self, pos: int) -> str:
        """The clause (between punctuation marks) around a position, in the original text."""
        start = max(self.original.rfind(p, 0, pos) for p in _CLAUSE_MARKS) + 1
        ends = [i for p in _CLAUSE_MARKS if (i := self.original.find(p, pos)) >= 0]
        return self.original[start : min(ends, default=len(self.original))]


_CLAUSE_MARKS = (",", ";", ":", ".", "(", ")", "!", "?")


def _alt(words: Iterable[str]) -> str:
    """A non-capturing alternation of phrases for use inside a larger pattern."""
    return f"(?:{vocab.alternation_body(words)})"


def _lex(key: str):
    return vocab.lexicon("claims")[key]


def _words(key: str) -> list[str]:
    return [vocab.american(str(w).lower()) for w in _lex(key)]


# ---- the rules behind each claim type ---------------------------------------------------------

_OPPOSITE = {
    "left": "right",
    "right": "left",
    "upper": "lower",
    "lower": "upper",
    "up": "down",
    "down": "up",
}
_EDGE_OF = {"left": "left", "right": "right", "upper": "top", "lower": "bottom"}


def _claim(check, kind, phrase, rule, opposite, state, start=0) -> Claim:
    return Claim(check, kind, phrase.strip(), rule, opposite, state, start)


def _where(r: Mapping, _: Scene) -> str:
    """Where a viewer sees the target (center / middle: clearly in neither half)."""
    said = (
        f"the target's horizontal position is {margins.image_half(r) or 'center'}, its "
        f"vertical position {margins.image_level(r) or 'middle'}"
    )
    return said + (" (in the center)" if margins.central(r) else "")


def _half(side: str, phrase: str, start: int) -> Claim:
    """P1: "on the left side of the image", "higher up", "in the bottom part"."""
    get = margins.image_half if side in ("left", "right") else margins.image_level
    return _claim(
        "spatial",
        "half",
        phrase,
        lambda r, s: get(r) == side,
        lambda r, s: get(r) == _OPPOSITE[side],
        _where,
        start,
    )


def _quadrant(level: str, side: str, phrase: str, start: int) -> Claim:
    """P2: "in the upper left of the image"; its negation needs the opposite half on an axis."""
    return _claim(
        "spatial",
        "quadrant",
        phrase,
        lambda r, s: margins.image_level(r) == level and margins.image_half(r) == side,
        lambda r, s: (
            margins.image_level(r) == _OPPOSITE[level] or margins.image_half(r) == _OPPOSITE[side]
        ),
        _where,
        start,
    )


def _corner(level: str | None, side: str | None, phrase: str, start: int) -> Claim:
    """P3: "in the lower right corner"; unnamed ("in a corner"): any corner."""
    if level and side:
        name = f"{level} {side}"
        return _claim(
            "spatial",
            "corner",
            phrase,
            lambda r, s: margins.corner(r) == name,
            lambda r, s: (
                margins.image_level(r) == _OPPOSITE[level]
                or margins.image_half(r) == _OPPOSITE[side]
            ),
            lambda r, s: f"the target's corner is {margins.corner(r) or 'none'}",
            start,
        )
    return _claim(
        "spatial",
        "corner",
        phrase,
        lambda r, s: margins.corner(r) is not None,
        lambda r, s: margins.central(r),
        lambda r, s: f"the target's corner is {margins.corner(r) or 'none'}",
        start,
    )


def _centre(phrase: str, start: int, *, negated: bool = False) -> Claim:
    """P4: "in the center of the image", "central"; its negation needs an edge (P5)."""
    claim = _claim(
        "spatial",
        "centre",
        phrase,
        lambda r, s: margins.central(r),
        lambda r, s: bool(margins.edges(r)),
        _where_edges,
        start,
    )
    return replace(claim, negated=negated)


def _where_edges(r: Mapping, scene: Scene) -> str:
    at = sorted(margins.edges(r))
    edges = f"at the {' and '.join(at)} edge" if at else "at no edge"
    return f"{_where(r, scene)}, {edges}"


def _edge(edge: str | None, phrase: str, start: int, *, negated: bool = False) -> Claim:
    """P5: "near the left edge", "at the periphery". A named edge's negation needs the
    opposite half; the unnamed one's ("away from the edges") the centre."""
    if edge is None:
        claim = _claim(
            "spatial",
            "edge",
            phrase,
            lambda r, s: bool(margins.edges(r)),
            lambda r, s: margins.central(r),
            _where_edges,
            start,
        )
    else:
        side = {"left": "left", "right": "right", "top": "upper", "bottom": "lower"}[edge]
        get = margins.image_half if edge in ("left", "right") else margins.image_level
        claim = _claim(
            "spatial",
            "edge",
            phrase,
            lambda r, s: margins.near_edge(r, edge),
            lambda r, s: get(r) == _OPPOSITE[side],
            _where_edges,
            start,
        )
    return replace(claim, negated=negated)


def _end(level: str, phrase: str, start: int) -> Claim:
    """ "at the top of the image", "near the bottom": both the half (P1) and the edge (P5)."""
    edge = _EDGE_OF[level]
    return _claim(
        "spatial",
        "edge",
        phrase,
        lambda r, s: margins.image_level(r) == level and margins.near_edge(r, edge),
        lambda r, s: margins.image_level(r) == _OPPOSITE[level],
        _where_edges,
        start,
    )


def _clock(hour: int, phrase: str, start: int) -> Claim:
    """P6: "at 3 o'clock" (endoscopy only): the centroid's angle about the image centre."""

    def endoscopy(r: Mapping) -> bool:
        return any(p.technique == "endoscopy" for p in vocab.rendered(r.get("modality") or ""))

    def state(r: Mapping, _: Scene) -> str:
        if not endoscopy(r):
            return "clock positions are only checked on endoscopy images"
        actual = margins.clock_hour(r)
        if actual is None:
            return "the target is too near the image center to have a clock position"
        return f"the target is at {(actual or 12):.1f} o'clock"

    return _claim(
        "spatial",
        "clock",
        phrase,
        lambda r, s: endoscopy(r) and margins.at_clock(r, hour),
        None,
        state,
        start,
    )


def _others_state(r: Mapping, scene: Scene) -> str:
    others = scene.others(r)
    if others is None:
        n = scene.expected(r)
        return f"cannot compare: {n} candidates recorded, {len(scene.candidates(r))} known"
    return ""


def _compare(kind: str, phrase: str, start: int, test, describe) -> Claim:
    """A comparison with the other candidates (S2-S4): ``test(t, others)`` is the rule; its
    negation holds when another candidate clearly wins it against the target."""

    def rule(r: Mapping, scene: Scene) -> bool:
        others = scene.others(r)
        return others is not None and test(r, others)

    def opposite(r: Mapping, scene: Scene) -> bool:
        others = scene.others(r)
        return bool(others) and any(test(o, [r]) for o in others)

    def state(r: Mapping, scene: Scene) -> str:
        return _others_state(r, scene) or describe(r, scene)

    return _claim("relational", kind, phrase, rule, opposite, state, start)


def _n_candidates(r: Mapping, scene: Scene) -> str:
    n = scene.expected(r)
    what = r["label"] if scene.by_label else "target"
    return f"{n} {what} candidate(s)"


def _extremal(direction: str, phrase: str, start: int) -> Claim:
    """S2: "leftmost", "the higher of the two": clearly beyond every other candidate."""
    return _compare(
        "extremal",
        phrase,
        start,
        lambda t, others: margins.extremal(t, others, direction),
        lambda r, s: (
            f"the target is not clearly the farthest {direction} of its " + _n_candidates(r, s)
        ),
    )


def _size_compare(which: str, phrase: str, start: int) -> Claim:
    """S3: "largest", "the smaller one": a visible area difference to every other."""
    test = margins.largest if which == "largest" else margins.smallest
    return _compare(
        "size_comparison",
        phrase,
        start,
        test,
        lambda r, s: (
            f"the target is not the {which} of its {_n_candidates(r, s)} by a visible margin"
        ),
    )


def _central_rank(nearer_centre: bool, phrase: str, start: int) -> Claim:
    """S4: "the one nearer the center" / "the more peripheral one"."""
    test = margins.nearer_centre if nearer_centre else margins.nearer_edge
    where = "center" if nearer_centre else "edge"
    return _compare(
        "centrality",
        phrase,
        start,
        test,
        lambda r, s: (
            f"the target is not clearly the nearest the {where} of its " + _n_candidates(r, s)
        ),
    )


def _rank(rank: int, from_largest: bool, phrase: str, start: int) -> Claim:
    """S3 ordinals: "the second largest": every neighbouring pair up to it visibly apart."""

    def actual(r: Mapping, scene: Scene) -> int | None:
        others = scene.others(r)
        if others is None:
            return None
        return margins.size_rank_clear(r, others, from_largest=from_largest)

    def state(r: Mapping, scene: Scene) -> str:
        got = actual(r, scene)
        if got is None:
            return _others_state(r, scene) or "the size order is not visibly clear"
        return f"the target is number {got} by size of {scene.expected(r)}"

    return _claim(
        "relational",
        "size_rank",
        phrase,
        lambda r, s: actual(r, s) == rank,
        None,
        state,
        start,
    )


_COUNT_TESTS = {
    "==": lambda n, k: n == k,
    ">=": lambda n, k: n >= k,
}


def _count(op: str, k: int, label: str | None, phrase: str, start: int) -> Claim:
    """S6: "the only", "one of several", "of the three": the number of candidates (of the
    label the count names, ``label``; None: the query's own candidates)."""

    def n(r: Mapping, scene: Scene) -> int | None:
        if label is None:
            return scene.expected(r)
        if label == "*":
            return r["num_targets_in_image"]
        if label == r["label"]:
            return r["num_candidates"]
        found = scene.of_label(r, label)
        return None if found is None else len(found)

    def rule(r: Mapping, scene: Scene) -> bool:
        got = n(r, scene)
        return got is not None and _COUNT_TESTS[op](got, k)

    def opposite(r: Mapping, scene: Scene) -> bool:
        got = n(r, scene)
        return got is not None and not _COUNT_TESTS[op](got, k)

    def state(r: Mapping, scene: Scene) -> str:
        got = n(r, scene)
        what = (label if label not in (None, "*") else None) or (
            r["label"] if label is None and scene.by_label else "target"
        )
        if got is None:
            return f"the number of {what} targets in the image is not known"
        return f"the image has {got} {what} candidate(s)"

    return _claim("relational", "count", phrase, rule, opposite, state, start)


def _physical_size(word: str, phrase: str, start: int) -> Claim:
    """Z1: a size word is a clinical class of the label (``LabelSpec.size_classes``) over its
    largest dimension in mm; a biometric label takes none; without pixel spacing or declared
    classes the word is unverifiable (Z3)."""

    def decide(r: Mapping, scene: Scene) -> tuple[bool | None, str]:
        spec = scene.labels.get(r["label"])
        if spec is None:
            return None, f"unverifiable: no label spec for {r['label']}"
        if spec.biometric:
            return None, (
                f"a {r['label'].replace('_', ' ')} takes no size word: its size is a "
                "measurement against a norm"
            )
        classes = {c.word: c for c in spec.size_classes}
        if word not in classes:
            known = ", ".join(classes) or "none"
            return None, (
                f"unverifiable: '{word}' is not a size class of {r['label']} (classes: {known}); "
                "say 'a small/large part of the image'"
            )
        mm = margins.largest_dimension_mm(r)
        if mm is None:
            return None, (
                "unverifiable: no pixel spacing, so no physical size; say 'a small/large part "
                "of the image'"
            )
        return classes[word].holds(mm), f"the target measures {mm:.1f} mm"

    return _claim(
        "morphology",
        "size_physical",
        phrase,
        lambda r, s: decide(r, s)[0] is True,
        lambda r, s: decide(r, s)[0] is False,
        lambda r, s: decide(r, s)[1],
        start,
    )


_SHARE_RULES = {
    "most": (lambda x: x >= margins.MOST_OF_IMAGE, "small_part"),
    "large_part": (lambda x: x >= margins.LARGE_PART_OF_IMAGE, "small_part"),
    "small_part": (lambda x: x <= margins.SMALL_PART_OF_IMAGE, "large_part"),
}


def _share(which: str, phrase: str, start: int) -> Claim:
    """Z2: "filling most of the image", "a small part of the frame": the share of the image."""
    test, opposite = _SHARE_RULES[which]
    return _claim(
        "morphology",
        "size_image",
        phrase,
        lambda r, s: test(margins.image_share(r)),
        lambda r, s: _SHARE_RULES[opposite][0](margins.image_share(r)),
        lambda r, s: f"the target covers {margins.image_share(r):.0%} of the image",
        start,
    )


def _shape(word: str, key: str, start: int) -> Claim:
    test = vocab.SHAPE_RULES[key]
    return _claim(
        "morphology",
        "shape",
        word,
        lambda r, s: test(r["shape"]),
        None,
        lambda r, s: (
            f"circularity {r['shape']['circularity']:.2f}, elongation "
            f"{r['shape']['elongation']:.2f}, solidity {r['shape']['solidity']:.2f}"
        ),
        start,
    )


def _orientation(word: str, key: str, start: int) -> Claim:
    return _claim(
        "morphology",
        "orientation",
        word,
        lambda r, s: r["shape"]["orientation"] == key,
        None,
        lambda r, s: f"the target's orientation is {r['shape']['orientation']}",
        start,
    )


def _patient(side: str, phrase: str, start: int) -> Claim:
    """A1: the patient's side (volumes: centroid against the body midline)."""

    def state(r: Mapping, _: Scene) -> str:
        actual = r["spatial"]["patient_side"]
        if actual is None and r["spatial"].get("display_convention") == "unoriented":
            return "the volume's header records no orientation"
        if actual is None:
            return "this image has no patient side (2D source)"
        return f"the target is on the patient's {actual}"

    other = {"left": "right", "right": "left"}.get(side)
    return _claim(
        "spatial",
        "patient_side",
        phrase,
        lambda r, s: r["spatial"]["patient_side"] == side,
        (lambda r, s: r["spatial"]["patient_side"] == other) if other else None,
        state,
        start,
    )


def _oriented(r: Mapping) -> bool:
    """Whether the slice is shown in radiological display (a volume whose header records its
    orientation): only then do anatomical words map onto the image."""
    return r["spatial"].get("display_convention") == "radiological"


# Where each anatomical direction lies on a rendered slice (radiological display): axial,
# anterior up; coronal, superior up; sagittal, superior up and anterior on the image's left.
_DIRECTIONS = {
    "axial": {"anterior": "upper", "posterior": "lower"},
    "coronal": {"superior": "upper", "inferior": "lower"},
    "sagittal": {
        "superior": "upper",
        "inferior": "lower",
        "anterior": "left",
        "posterior": "right",
    },
}
_DIRECTION_OPPOSITE = {
    "anterior": "posterior",
    "posterior": "anterior",
    "superior": "inferior",
    "inferior": "superior",
}
_DIRECTION_WORDS = {
    "anterior": "anterior",
    "anteriorly": "anterior",
    "ventral": "anterior",
    "ventrally": "anterior",
    "posterior": "posterior",
    "posteriorly": "posterior",
    "dorsal": "posterior",
    "dorsally": "posterior",
    "superior": "superior",
    "superiorly": "superior",
    "cranial": "superior",
    "cranially": "superior",
    "inferior": "inferior",
    "inferiorly": "inferior",
    "caudal": "inferior",
    "caudally": "inferior",
}


def _direction(word: str, phrase: str, start: int) -> Claim:
    """A2: an anatomical direction is the half of the slice it maps to on that view."""

    def half_of(r: Mapping, direction: str) -> str | None:
        where = _DIRECTIONS.get(r.get("slice_axis") or "", {}).get(direction)
        if where is None or not _oriented(r):
            return None
        get = margins.image_half if where in ("left", "right") else margins.image_level
        return where if get(r) == where else None

    def state(r: Mapping, scene: Scene) -> str:
        axis = r.get("slice_axis")
        if not axis:
            return "an anatomical direction cannot be checked on a 2D image"
        if not _oriented(r):
            return "the volume's header records no orientation"
        if word not in _DIRECTIONS.get(axis, {}):
            return f"{word} is not a direction within an {axis} slice"
        where = _DIRECTIONS[axis][word]
        return f"{_where(r, scene)} (on an {axis} slice, {word} is the {where} part)"

    return _claim(
        "spatial",
        "direction",
        phrase,
        lambda r, s: half_of(r, word) is not None,
        lambda r, s: half_of(r, _DIRECTION_OPPOSITE[word]) is not None,
        state,
        start,
    )


def _lobe(word: str, phrase: str, start: int) -> Claim:
    """A3: "frontal" / "occipital" on an axial slice, along the brain mask's extent."""

    def brain_box(r: Mapping) -> Sequence[int] | None:
        boxes = {c["name"]: c["bbox_xyxy"] for c in r.get("context_boxes") or ()}
        return boxes.get("brain")

    def decide(r: Mapping) -> tuple[bool, str]:
        box = brain_box(r)
        if r.get("slice_axis") != "axial" or box is None or not _oriented(r):
            return (
                False,
                "unverifiable: brain lobes are checked only on oriented axial slices with a "
                "brain mask",
            )
        actual = margins.lobe(r, box)
        return (
            actual == word,
            f"the target lies in the {actual or 'middle (neither frontal nor occipital)'} part "
            "of the brain on this slice",
        )

    return _claim(
        "spatial",
        "lobe",
        phrase,
        lambda r, s: decide(r)[0],
        None,
        lambda r, s: decide(r)[1],
        start,
    )


def _view(axis: str, phrase: str, start: int) -> Claim:
    """The slice's plane: "axial", "coronal", "sagittal"."""
    return _claim(
        "spatial",
        "view",
        phrase,
        lambda r, s: r.get("slice_axis") == axis,
        lambda r, s: r.get("slice_axis") not in (None, axis),
        lambda r, s: (
            f"this image is an {r['slice_axis']} slice"
            if r.get("slice_axis")
            else "this image is a 2D image, not a slice"
        ),
        start,
    )


# ---- relations to another target or structure --------------------------------------------------


@dataclass(frozen=True)
class _Object:
    """The other end of a relation: "the other polyp", "the smaller one", "the edema"."""

    phrase: str
    label: str | None  # a structure name; None: the subject's own candidates ("the other one")
    kind: str  # "target" | "context" | "any" (a generic noun: any target)
    other: bool
    existential: bool
    mod: str | None = None

    def pool(self, r: Mapping, scene: Scene) -> list[Mapping] | None:
        """The targets the phrase may name, the subject included (None: not all known)."""
        if self.kind == "any":
            return scene.of_label(r, None)
        if self.label is None or self.label == r["label"]:
            found = scene.candidates(r) if self.label is None else scene.of_label(r, r["label"])
            if found is None or len(found) != (
                scene.expected(r) if self.label is None else r["num_candidates"]
            ):
                return None
            return found
        return scene.of_label(r, self.label)

    def resolve(self, r: Mapping, scene: Scene) -> tuple[list[Mapping], str]:
        """The targets the relation is to (several when existential: "another polyp"), or an
        empty list and why."""
        pool = self.pool(r, scene)
        if pool is None:
            return [], f"'{self.phrase}': not every target of the image is known"
        if self.mod:
            test = _MODIFIERS[self.mod]
            chosen = [t for t in pool if test(t, [o for o in pool if o["id"] != t["id"]])]
            if len(chosen) != 1:
                return [], f"'{self.phrase}' does not clearly name one target"
            if chosen[0]["id"] == r["id"]:
                return [], f"'{self.phrase}' is the target itself"
            return chosen, ""
        rest = [t for t in pool if t["id"] != r["id"]]
        if not rest:
            return [], f"'{self.phrase}': there is no such other target in the image"
        if self.existential or len(rest) == 1:
            return rest, ""
        return [], f"'{self.phrase}' is ambiguous: {len(rest)} such targets in the image"


_MODIFIERS: dict[str, Callable[[Mapping, Sequence[Mapping]], bool]] = {
    "largest": margins.largest,
    "smallest": margins.smallest,
    "left": lambda t, o: margins.extremal(t, o, "left"),
    "right": lambda t, o: margins.extremal(t, o, "right"),
    "up": lambda t, o: margins.extremal(t, o, "up"),
    "down": lambda t, o: margins.extremal(t, o, "down"),
}
_MOD_WORDS = {
    "larger": "largest",
    "largest": "largest",
    "bigger": "largest",
    "biggest": "largest",
    "smaller": "smallest",
    "smallest": "smallest",
    "leftmost": "left",
    "left": "left",
    "rightmost": "right",
    "right": "right",
    "upper": "up",
    "uppermost": "up",
    "higher": "up",
    "top": "up",
    "lower": "down",
    "lowermost": "down",
    "bottom": "down",
}


def _relative(direction: str, obj: _Object, phrase: str, start: int) -> Claim:
    """S1: "to the left of the other polyp", "above the edema"."""

    def test(r: Mapping, scene: Scene, way: str) -> bool:
        found, _ = obj.resolve(r, scene)
        if not found:
            return False
        if obj.existential:
            return any(margins.beyond(r, o, way) for o in found)
        return margins.beyond(r, found[0], way)

    def state(r: Mapping, scene: Scene) -> str:
        found, why = obj.resolve(r, scene)
        return why or f"the target is not clearly {direction} of {obj.phrase}"

    return _claim(
        "relational",
        "relative_position",
        phrase,
        lambda r, s: test(r, s, direction),
        None if obj.existential else (lambda r, s: test(r, s, _OPPOSITE[direction])),
        state,
        start,
    )


def _than(which: str, obj: _Object, phrase: str, start: int) -> Claim:
    """S3 between two targets: "larger than the other polyp", "smaller than the edema"."""
    test = margins.largest if which == "largest" else margins.smallest
    other = margins.smallest if which == "largest" else margins.largest

    def decide(r: Mapping, scene: Scene, rule) -> bool:
        found, _ = obj.resolve(r, scene)
        if not found:
            return False
        if obj.existential:
            return any(rule(r, [o]) for o in found)
        return rule(r, found[:1])

    def state(r: Mapping, scene: Scene) -> str:
        found, why = obj.resolve(r, scene)
        word = "larger" if which == "largest" else "smaller"
        return why or f"the target is not {word} than {obj.phrase} by a visible margin"

    return _claim(
        "relational",
        "size_comparison",
        phrase,
        lambda r, s: decide(r, s, test),
        None if obj.existential else (lambda r, s: decide(r, s, other)),
        state,
        start,
    )


def _touching(kind: str, obj: _Object, phrase: str, start: int) -> Claim:
    """S5: "next to", "inside", "surrounding" another target or a context structure, from
    the record's relations (by label name): exact for the one target of a label."""

    def decide(r: Mapping, scene: Scene) -> bool | None:
        names = r["relations"][kind]
        if obj.kind == "context":
            return obj.label in names
        found, _ = obj.resolve(r, scene)
        if not found:
            return None
        labels = {o["label"] for o in found}
        if not labels & set(names):
            return False
        pool = obj.pool(r, scene) or []
        same = [t for t in pool if t["id"] != r["id"] and t["label"] in labels]
        return True if (obj.existential or len(same) == 1) else None

    def state(r: Mapping, scene: Scene) -> str:
        if obj.kind != "context":
            found, why = obj.resolve(r, scene)
            if why:
                return why
        names = list(r["relations"][kind]) or "none"
        return f"the target's {kind.replace('_', ' ')} relations are {names}"

    return _claim(
        "relational",
        "adjacency" if kind == "adjacent_to" else "containment",
        phrase,
        lambda r, s: decide(r, s) is True,
        lambda r, s: decide(r, s) is False,
        state,
        start,
    )


# ---- the grammar ------------------------------------------------------------------------------

_LOCATION_NOUNS = frozenset({"part", "portion", "region", "regions", "area", "areas", "zone"})
# Words that bind an image left/right to the picture when they are in its clause.
_ANCHOR_WORDS = (
    "image",
    "picture",
    "frame",
    "view",
    "field of view",
    "screen",
    "photo",
    "photograph",
    "scan",
    "slice",
    "display",
    "panel",
    "section",
)


@lru_cache(maxsize=1)
def _grammar() -> dict[str, str]:
    """Regex pieces built once from the lexicons."""
    anchors = _alt(vocab.anchors())
    numbers = {str(k): int(v) for k, v in _lex("numbers").items()}
    hours = {str(k): int(v) for k, v in _lex("clock_hours").items()}
    generic = _alt(vocab.generic_nouns())
    return {
        "anchor": anchors,
        "numbers": _alt(numbers),
        "vague": _alt(_lex("vague_counts")),
        "ordinals": _alt(_lex("ordinals")),
        "hours": _alt(hours),
        "generic": generic,
        # generic nouns that can only be a target, not a part of the image ("the lower lesion"
        # vs "the lower part")
        "targets": _alt(vocab.generic_nouns() - _LOCATION_NOUNS),
        "single": _alt(_words("single")),
        "size": _alt(_words("size_words")),
        "share_verbs": _alt(_words("image_share_verbs")),
        "lobes_checked": _alt(_words("lobes_checked")),
        "lobes_unverifiable": _alt(_words("lobes_unverifiable")),
        "sided": _alt(_words("sided_structures")),
    }


@lru_cache(maxsize=1)
def _tables() -> dict[str, dict[str, object]]:
    claims = vocab.lexicon("claims")
    shapes = {vocab.american(w): key for key, words in claims["shapes"].items() for w in words}
    orients = {w: key for key, words in claims["orientations"].items() for w in words}
    shares = {vocab.american(w): key for key, words in claims["image_share"].items() for w in words}
    return {
        "shapes": shapes,
        "orientations": orients,
        "shares": shares,
        "numbers": {str(k): int(v) for k, v in claims["numbers"].items()},
        "vague": {str(k): int(v) for k, v in claims["vague_counts"].items()},
        "ordinals": {str(k): int(v) for k, v in claims["ordinals"].items()},
        "hours": {str(k): int(v) for k, v in claims["clock_hours"].items()},
    }


_SIDE = r"(left|right)"
_LEVEL = r"(upper|top|lower|bottom)"
_LEVELS = {"upper": "upper", "top": "upper", "lower": "lower", "bottom": "lower"}
_NEGATORS = (
    r"\b(?:is|are|does|do|was)\s+not\b|\b(?:isn't|aren't|doesn't|don't|wasn't)\b|\bnot\b"
    r"|\bno\b|\bwithout\b|\bother\s+than\b|\brather\s+than\b|\binstead\s+of\b"
    r"|\bexcept(?:\s+for)?\b|\bapart\s+from\b|\bbut\s+not\b|\bneither\b|\bnor\b|\bnever\b"
)
_SCOPE_BREAK = re.compile(
    r"\b(and|but|which|that|who|while|whereas|although|though|yet)\b|[,;:.()!?]"
)
# A body region named after a side or a direction ("the left half of the brain"); the brain
# may be a structure of the image (a token), checked by ``_Parser.context_only``.
_BODY = rf"(?:brain|head|body|chest|abdomen|pelvis|neck|skull|cerebrum|{TOKEN})"
_HALVES = (
    r"(?:cerebral\s+|cerebellar\s+)?hemispheres?|hemithorax|hemicolon|hemiabdomen|hemipelvis"
    rf"|(?:half|side|part|portion)\s+of\s+(?:the\s+)?{_BODY}"
)
_LOBE_TAIL = r"(?:\s+(?:lobes?|regions?|areas?|parts?|portions?|cortex|territory|white\s+matter))?"


def parse(
    query: str,
    structures: Mapping[str, str],
    *,
    labels: Collection[str] = (),
    neutral: Iterable[str] = (),
    appearance: Iterable[str] = (),
) -> Parsed:
    """The claims of ``query``. ``structures`` maps structure terms (lower case, American
    spelling: label terms and context structures such as "brain") to the names used in a
    record's ``relations``; ``labels`` are the names among them that are target labels (the
    rest are context structures); ``neutral`` and ``appearance`` extend the lexicons with a
    source's own words."""
    p = _Parser(query, frozenset(labels))
    text, out = p.text, p.out
    # 1. structure terms become tokens (they may hold claim words: "non-enhancing tumour")
    text.tokenize(_structure_phrases(tuple(structures.items())))
    # 2. anatomy read before organ words: sides, lobes, directions, the slice's plane
    _anatomy(p)
    # 3. organs and modalities become tokens ("large bowel" is no size claim)
    words: dict[str, tuple[str, object, bool]] = {}
    for word, groups in vocab.organ_words().items():
        words[word] = ("organ", groups, False)
    for word, claim in vocab.modality_words().items():
        words[word] = ("modality", claim, False)
    text.tokenize(words)
    # 4. a count worded as a negation, then the negations
    for m in text.take(
        rf"\b(?:no|without\s+(?:any|an|a)?)\s*other\s+(?:{TOKEN}|(?:{p.g['generic']})s?\b|ones?\b)"
    ):
        p.add(_count("==", 1, _count_label(text, m.group(0)), m.group(0), m.start()))
    negators = [(m.start(), m.end(), m.group(0)) for m in text.take(_NEGATORS)]
    # 5. claims, the most specific phrases first
    _clock_and_share(p)
    _relations(p)
    _centrality(p)
    _extremals(p)
    _counts(p)
    for m in text.take(rf"\b({p.g['ordinals']})[\s-]+(largest|biggest|smallest|tiniest)\b"):
        rank = p.tables["ordinals"][m.group(1)]
        p.add(_rank(rank, m.group(2) not in ("smallest", "tiniest"), m.group(0), m.start()))
    for m in text.take(rf"\b({_alt(_SIZE_COMPARISONS)})\b"):
        p.add(_size_compare(_SIZE_COMPARISONS[m.group(1)], m.group(0), m.start()))
    _positions(p)
    for m in text.take(rf"\b({p.g['size']})(?![\w-])"):
        p.add(_physical_size(re.sub(r"\s+", " ", m.group(1)), m.group(0), m.start()))
    shaped = r"(?:\s+(?:in\s+)?(?:shape|form|outline|appearance))?"
    for table, make in (("shapes", _shape), ("orientations", _orientation)):
        words = vocab.alternation_body(p.tables[table])
        for m in text.take(rf"(?<![\w-])({words})(?![\w-]){shaped if table == 'shapes' else ''}"):
            table_of = p.tables[table]
            p.add(make(m.group(1), table_of[vocab.lookup(table_of, m.group(1))], m.start()))
    extra = {vocab.american(w.lower()) for w in appearance}
    for m in text.take(vocab.alternation(tuple(vocab.appearance_words() | extra))):
        out.appearance.append(m.group(1))
        p.appearance_at.append((m.group(1), m.start()))
    # 6. negation onto the claims in its scope; 7. whose left/right; 8. what is left
    _negate(p, negators)
    loose = [pos for pos in p.sided if not _anchored(text.clause(pos))]
    if loose:
        said = next(c.phrase for c in out.claims if c.start == loose[0])
        out.problems.append(
            (
                "spatial",
                f"'{said}' does not say whose left/right: write 'of the image' (in the same "
                "phrase) or 'the patient's'",
            )
        )
    _leftovers(p, neutral)
    out.claims.sort(key=lambda c: c.start)  # reasons name the first false claim as read
    out.rest = text.text
    return out


_SIZE_COMPARISONS = {
    "largest": "largest",
    "biggest": "largest",
    "greatest": "largest",
    "larger": "largest",
    "bigger": "largest",
    "greater": "largest",
    "smallest": "smallest",
    "smaller": "smallest",
    "tiniest": "smallest",
    "tinier": "smallest",
}


@lru_cache(maxsize=64)
def _structure_phrases(items: tuple[tuple[str, str], ...]) -> dict[str, tuple[str, object, bool]]:
    """Structure terms and their plurals -> (kind, name, plural); a term that is itself the
    plural of another ("enhancing foci" of "enhancing focus") stays plural."""
    plurals = {vocab.plural(term): name for term, name in items}
    phrases = {term: ("struct", name, True) for term, name in plurals.items()}
    for term, name in items:
        phrases[term] = ("struct", name, term in plurals)
    return phrases


def _anatomy(p: _Parser) -> None:
    """A1 patient sides, A3 lobes, A2 directions and the slice's plane."""
    text, g, ok = p.text, p.g, p.context_only
    for m in text.take(
        rf"\bpatient'?s'?\s+{_SIDE}(?:[\s-]hand)?(?:\s+(?:{_HALVES}|side(?!\s+of\b)))?", ok
    ) + text.take(
        rf"\b(?:on\s+)?(?:the\s+)?{_SIDE}(?:[\s-]hand)?\s+side\s+of\s+the\s+patient"
        r"(?:'s\s+body)?\b"
    ):
        p.add(_patient(m.group(1), m.group(0), m.start()))
    for m in text.take(rf"\b{_SIDE}[\s-]sided\b"):
        p.add(_patient(m.group(1), m.group(0), m.start()))
    # "in the right rather than the left hemisphere": the first side names the same structure
    contrast = r"rather\s+than|and\s+not|but\s+not|instead\s+of|not"
    for m in text.take(
        rf"\b{_SIDE}(?=\s+(?:{contrast})\s+(?:the\s+)?(?:left|right)\s+(?:{_HALVES}|{g['sided']}))",
        ok,
    ):
        p.add(_patient(m.group(1), m.group(0), m.start()))
    for m in text.take(rf"\b{_SIDE}(?:[\s-]hand)?\s+(?:{_HALVES})(?![\w-])", ok):
        p.add(_patient(m.group(1), m.group(0), m.start()))
    for m in text.take(rf"\b{_SIDE}(?=\s+{g['sided']}(?![\w-]))"):
        p.add(_patient(m.group(1), m.group(0), m.start()))
    for m in text.take(r"\b(?:(?:in|at|on|along)\s+)?(?:the\s+)?midline\b"):
        p.add(_patient("midline", m.group(0), m.start()))
    for m in text.take(rf"\b({g['lobes_unverifiable']}){_LOBE_TAIL}(?![\w-])"):
        p.out.problems.append(
            ("unverifiable", f"'{p.said(m.group(0))}': this brain region needs an atlas")
        )
    for m in text.take(rf"\b({g['lobes_checked']}){_LOBE_TAIL}(?![\w-])"):
        p.add(_lobe(m.group(1), m.group(0), m.start()))
    part = r"(?:\s+(?:half|part|portion|region|aspect|side|area))?"
    for m in text.take(
        rf"\b(?:(?:at|in|toward|towards)\s+)?(?:the\s+)?(front|back){part}\s+of\s+(?:the\s+)?{_BODY}",
        ok,
    ):
        word = "anterior" if m.group(1) == "front" else "posterior"
        p.add(_direction(word, m.group(0), m.start()))
    for m in text.take(
        rf"\b({_alt(_DIRECTION_WORDS)})(?![\w-]){part}(?:\s+of\s+(?:the\s+)?{_BODY})?", ok
    ):
        p.add(_direction(_DIRECTION_WORDS[m.group(1)], m.group(0), m.start()))
    for m in text.take(r"\b(axial|transverse|coronal|sagittal)(?![\w-])"):
        axis = "axial" if m.group(1) == "transverse" else m.group(1)
        p.add(_view(axis, m.group(0), m.start()))


def _clock_and_share(p: _Parser) -> None:
    """P6 clock positions and Z2 image-relative sizes (both end in fixed words)."""
    text, g, t = p.text, p.g, p.tables
    for m in text.take(
        rf"\b(?:(?:at|in|around|near|toward|towards)\s+)?(?:the\s+|a\s+)?"
        r"(?:(?:about|around|approximately|roughly|near)\s+)?"
        rf"(\d{{1,2}}|{g['hours']})[\s-]*o'?\s*clock(?:\s+(?:position|location|direction))?\b"
    ):
        word = m.group(1)
        hour = int(word) if word.isdigit() else t["hours"][word]
        if 1 <= hour <= 12:
            p.add(_clock(hour, m.group(0), m.start()))
        else:
            p.out.problems.append(("spatial", f"'{m.group(0).strip()}' is no clock position"))
    for m in text.take(
        rf"\b(?:(?:{g['share_verbs']})\s+)?(?:only\s+)?({_alt(t['shares'])})\s+(?:the\s+)?"
        rf"(?:whole\s+|entire\s+)?(?:{g['anchor']})\b"
    ):
        p.add(_share(t["shares"][vocab.lookup(t["shares"], m.group(1))], m.group(0), m.start()))


def _anchored(clause: str) -> bool:
    return re.search(rf"\b{_alt(_ANCHOR_WORDS)}\b", clause) is not None


def _object(p: _Parser, m: re.Match) -> _Object | str:
    """The object phrase of a relation match (groups obj, det, other, mod, tok, noun), or the
    kind of token that cannot be one ("organ", "modality")."""
    text, labels = p.text, p.labels
    phrase = p.said(m.group("obj"))
    if m.group("adj"):  # "the other colonic polyp": the organ word is checked as such
        adj = text.token(m.group("adj"))
        if adj.kind != "organ":
            return adj.kind
        p.out.organs.append((adj.text, adj.value))
    det = re.sub(r"\s+", " ", (m.group("det") or "").strip())
    other = bool(m.group("other")) or det == "another"
    existential = det in ("a", "an", "another", "any") or det.startswith("one of")
    mod = _MOD_WORDS.get(m.group("mod") or "")
    if m.group("tok"):
        tok = text.token(m.group("tok"))
        if tok.kind != "struct":
            return tok.kind
        name = str(tok.value)
        kind = "target" if not labels or name in labels else "context"
        return _Object(phrase, name, kind, other, existential or tok.plural, mod)
    if m.group("noun") in ("one", "ones"):
        return _Object(phrase, None, "target", other, existential, mod)
    return _Object(phrase, None, "any", other, existential, mod)


_MODS = _alt(_MOD_WORDS)
_OBJECT = (
    r"(?P<obj>(?P<det>(?:the|a|an|another|any|one\s+of\s+the)\s+)?(?P<other>other\s+|second\s+)?"
    rf"(?:(?P<mod>{_MODS})\s+)?(?:(?P<adj>{TOKEN})\s+(?={TOKEN}))?"
    rf"(?:(?P<tok>{TOKEN})|(?P<noun>ones?|{{generic}})s?\b))"
)
_DIRECTION_VERBS = {
    "left": r"(?:to|on)\s+the\s+left(?:[\s-]hand\s+side)?\s+of|left\s+of|leftward\s+of",
    "right": r"(?:to|on)\s+the\s+right(?:[\s-]hand\s+side)?\s+of|right\s+of|rightward\s+of",
    "up": r"above|over|higher(?:\s+up)?\s+than|on\s+top\s+of|further\s+up\s+than",
    "down": r"below|beneath|under|underneath|lower(?:\s+down)?\s+than|further\s+down\s+than",
}
_RELATION_VERBS = {
    "adjacent_to": r"next\s+to|adjacent\s+to|beside|alongside|bordering|borders?|touching"
    r"|touch(?:es)?|abutting|abuts?|in\s+contact\s+with|contiguous\s+with|near|close\s+to"
    r"|nearby|neighbou?ring|flanking|adjoining|against",
    "inside": r"inside(?:\s+of)?|within|in|enclosed\s+by|surrounded\s+by|encircled\s+by"
    r"|embedded\s+in|contained\s+in|encased\s+by|enclosed\s+in|at\s+the\s+center\s+of",
    "contains": r"containing|contains|surrounding|surrounds|enclosing|encloses|encircling"
    r"|encircles|around|encasing|harbou?ring",
}


def _relations(p: _Parser) -> None:
    """S1 relative positions and S5 adjacency/containment, with their object phrases."""
    obj = _OBJECT.format(generic=p.g["targets"])
    for direction, verbs in _DIRECTION_VERBS.items():
        for m in p.text.take(rf"\b(?:{verbs})\s+{obj}"):
            target = _object(p, m)
            if isinstance(target, str) or target.kind == "context":
                p.out.problems.append(
                    ("unverifiable", f"'{p.said(m.group(0))}': no position rule for this object")
                )
                continue
            p.add(
                _relative(direction, target, m.group(0), m.start()),
                side=direction in ("left", "right"),
            )
    for which, words in (("largest", "larger|bigger|greater"), ("smallest", "smaller|tinier")):
        for m in p.text.take(rf"\b(?:{words})(?:\s+in\s+size)?\s+than\s+{obj}"):
            target = _object(p, m)
            if isinstance(target, str) or target.kind == "context":
                p.out.problems.append(
                    ("unverifiable", f"'{p.said(m.group(0))}': no size rule for this object")
                )
                continue
            p.add(_than(which, target, m.group(0), m.start()))
    for kind, verbs in _RELATION_VERBS.items():
        for m in p.text.take(rf"\b(?:{verbs})\s+{obj}"):
            target = _object(p, m)
            if target == "organ":
                tok = p.text.token(m.group("tok"))
                if kind == "inside":  # "in the colon": an organ claim, checked as such
                    p.out.organs.append((tok.text, tok.value))
                else:
                    p.out.unknown.append(p.said(m.group(0)))
                continue
            if target == "modality":  # "in the MRI" is no relation
                tok = p.text.token(m.group("tok"))
                p.out.modalities.append((tok.text, tok.value))
                continue
            p.add(_touching(kind, target, m.group(0), m.start()))


def _centrality(p: _Parser) -> None:
    """S4: "nearer the center", "the more central one", "the more peripheral one"."""
    centre = (
        r"(?:the\s+)?(?:image\s+)?(?:center|middle)(?:\s+of\s+the\s+(?:image|frame|view|picture))?"
    )
    edge = (
        r"(?:the\s+)?(?:image\s+)?(?:edges?|borders?|periphery|margins?|boundary)"
        r"(?:\s+of\s+the\s+(?:image|frame|view|picture))?"
    )
    near = r"(?:nearer|closer|nearest|closest)\s+(?:to\s+)?"
    far = r"(?:farther|further|farthest|furthest)\s+(?:away\s+)?from\s+"
    for m in p.text.take(
        rf"\b(?:{near}{centre}|{far}{edge}|(?:more|most)\s+(?:central(?:ly)?|centrally\s+(?:located|placed|positioned|situated)|centered))\b"
    ):
        p.add(_central_rank(True, m.group(0), m.start()))
    for m in p.text.take(
        rf"\b(?:{near}{edge}|{far}{centre}|(?:more|most)\s+peripheral(?:ly)?(?:\s+(?:located|placed|positioned|situated))?)\b"
    ):
        p.add(_central_rank(False, m.group(0), m.start()))


def _counts(p: _Parser) -> None:
    """S6: "the only", "one of several", "of the three", "both", "three polyps". A label term
    inside a count names the kind of target ("of the two polyps")."""
    g, t = p.g, p.tables

    plural_noun = rf"(?:(?:{g['generic']})s|foci|ones)\b"  # "lesions", "foci", "ones"
    generic_plural = re.compile(rf"\b{plural_noun}")

    def plural_only(m: re.Match) -> bool:
        """A term after a count must be plural ("of the two polyps", "of the edema regions",
        never "of the brain")."""
        if generic_plural.search(m.group(0)):
            return True
        return all(p.text.token(t).plural for t in re.findall(TOKEN, m.group(0)))

    def counted(pattern: str) -> list[tuple[re.Match, str | None]]:
        found = []
        for m in p.text.take(pattern, plural_only):
            for tok in re.findall(TOKEN, m.group(0)):
                token = p.text.token(tok)
                if token.kind == "struct":
                    p.out.named.append((token.text, str(token.value)))
            p.out.generic += generic_plural.findall(m.group(0))
            found.append((m, _count_label(p.text, m.group(0))))
        return found

    def number(word: str) -> tuple[str, int]:
        word = re.sub(r"\s+", " ", word)
        if word in t["numbers"]:
            return "==", t["numbers"][word]
        return ">=", t["vague"][word]

    noun = rf"(?:\s+(?:{TOKEN}(?:\s+{plural_noun})?|{plural_noun}))?"
    count = rf"({g['numbers']}|{g['vague']})"
    det = r"(?:the\s+|all\s+|these\s+|those\s+|its\s+)?"
    of = r"(?:one\s+of|of|among|amongst|between|from)"
    for m, label in counted(rf"\b{of}\s+{det}{count}{noun}"):
        p.add(_count(*number(m.group(1)), label, m.group(0), m.start()))
    plural = rf"(?:{TOKEN}(?:\s+{plural_noun})?|{plural_noun})"
    for m, label in counted(rf"\b{of}\s+(?:the|these|those|all(?:\s+the)?|its)\s+{plural}"):
        p.add(_count(">=", 2, label, m.group(0), m.start()))
    for m, label in counted(rf"\b(?:both|a\s+pair\s+of|pair\s+of|either\s+of\s+the\s+two){noun}"):
        p.add(_count("==", 2, label, m.group(0), m.start()))
    for m, label in counted(rf"\b{count}\s+{plural}"):
        p.add(_count(*number(m.group(1)), label, m.group(0), m.start()))
    for m in p.text.take(rf"\b(?:the\s+|a\s+|an\s+)?(?:{g['single']})(?![\w-])"):
        p.add(_count("==", 1, None, m.group(0), m.start()))


def _count_label(text: _Text, phrase: str) -> str | None:
    """The label a count is about: its structure token's, "*" for a generic noun (every
    target), None when the count names no noun (the query's own candidates)."""
    token = re.search(TOKEN, phrase)
    if token:
        tok = text.token(token.group(0))
        return str(tok.value) if tok.kind == "struct" else None
    return "*" if re.search(rf"\b{_alt(vocab.generic_nouns() - {'one', 'ones'})}", phrase) else None


def _extremals(p: _Parser) -> None:
    """S2: "leftmost", "farthest to the right", "the upper one", "the lower of the two"."""
    words = {
        "highest up": "up",
        "lowest down": "down",
        "left-most": "left",
        "right-most": "right",
        "upper-most": "up",
        "top-most": "up",
        "highest": "up",
        "lower-most": "down",
        "bottom-most": "down",
        "lowest": "down",
    }
    for m in p.text.take(rf"\b({_alt(words)})(?![\w-])"):
        direction = words[vocab.lookup(words, m.group(1))]
        p.add(_extremal(direction, m.group(0), m.start()), side=direction in ("left", "right"))
    ways = {
        "left": "left",
        "right": "right",
        "up": "up",
        "down": "down",
        "top": "up",
        "bottom": "down",
    }
    for m in p.text.take(
        r"\b(?:farthest|furthest|most\s+far)\s+(?:to(?:ward|wards)?\s+(?:the\s+)?)?(left|right|up|down|top|bottom)\b"
    ):
        direction = ways[m.group(1)]
        p.add(_extremal(direction, m.group(0), m.start()), side=direction in ("left", "right"))
    adjectives = {
        "left": "left",
        "right": "right",
        "upper": "up",
        "top": "up",
        "higher": "up",
        "lower": "down",
        "bottom": "down",
    }
    counted = rf"(?:{p.g['numbers']}|{p.g['vague']}|{TOKEN}|ones\b|(?:{p.g['generic']})s\b)"
    for m in p.text.take(
        rf"\b({_alt(adjectives)})(?:\s+one)?(?=\s+of\s+(?:(?:the|these|those|all)\s+)?"
        rf"(?:both\b|{counted}))"
    ):
        direction = adjectives[m.group(1)]
        p.add(_extremal(direction, m.group(0), m.start()), side=direction in ("left", "right"))
    for m in p.text.take(
        rf"\b({_alt(adjectives)})(?=\s+(?:one\b|ones\b|{TOKEN}|(?:{p.g['targets']})\b))"
    ):
        direction = adjectives[m.group(1)]
        p.add(_extremal(direction, m.group(0), m.start()), side=direction in ("left", "right"))
    for m in p.text.take(
        r"\bthe\s+one\s+(?:(?:on|to|at|toward|towards)\s+the\s+(left|right|top|bottom)|(higher|further)\s+up|(lower|further)\s+down)\b"
    ):
        direction = ways[m.group(1)] if m.group(1) else ("up" if m.group(2) else "down")
        p.add(_extremal(direction, m.group(0), m.start()), side=direction in ("left", "right"))


def _positions(p: _Parser) -> None:
    """P1-P5: corners, edges, the centre, quadrants and halves of the image."""
    text, add = p.text, p.add
    # P3 corners
    corner = r"(?:(?:in|at|near|toward|towards|to|into)\s+)?(?:the\s+|a\s+|one\s+)?"
    for m in text.take(rf"\b{corner}{_LEVEL}[\s-]*{_SIDE}(?:[\s-]hand)?[\s-]+corner\b"):
        add(_corner(_LEVELS[m.group(1)], m.group(2), m.group(0), m.start()), side=True)
    for m in text.take(rf"\b{corner}{_SIDE}[\s-]+{_LEVEL}[\s-]+corner\b"):
        add(_corner(_LEVELS[m.group(2)], m.group(1), m.group(0), m.start()), side=True)
    for m in text.take(rf"\b{corner}corners?\b"):
        add(_corner(None, None, m.group(0), m.start()))
    # P5 edges; "away from the edges" is the negated periphery, "off-center" the negated centre
    edge_noun = r"(?:edges?|borders?|margins?|boundary|boundaries|rim|periphery|perimeter)"
    for m in text.take(
        rf"\b(?:away\s+from|far\s+from|distant\s+from|clear\s+of)\s+(?:the\s+|any\s+|all\s+)?"
        rf"(?:image\s+)?{edge_noun}\b"
    ):
        add(_edge(None, m.group(0), m.start(), negated=True))
    for m in text.take(
        r"\b(?:off[\s-]?cent(?:er|ered|ral)|eccentric(?:ally)?|away\s+from\s+the\s+(?:center|middle))\b"
    ):
        add(_centre(m.group(0), m.start(), negated=True))
    near = (
        r"(?:near|at|along|by|close\s+to|against|on|toward|towards|adjacent\s+to|next\s+to"
        r"|bordering|touching|abutting|reaching)"
    )
    for m in text.take(
        rf"\b(?:{near}\s+)?(?:the\s+)?(?:very\s+)?(left|right|top|bottom|upper|lower)\s+(?:image\s+)?{edge_noun}\b"
    ):
        edge = {"upper": "top", "lower": "bottom"}.get(m.group(1), m.group(1))
        add(_edge(edge, m.group(0), m.start()), side=edge in ("left", "right"))
    for m in text.take(
        rf"\b(?:(?:{near}|in|into)\s+)?(?:the\s+|an\s+|one\s+|any\s+)?(?:image\s+)?{edge_noun}\b"
        r"|\bperipheral(?:ly)?\b"
    ):
        add(_edge(None, m.group(0), m.start()))
    for m in text.take(
        r"\b(?:(?:at|near|toward|towards|close\s+to|in)\s+)(?:the\s+)?(?:very\s+)?(top|bottom)\b"
        r"(?![\s-]+(?:half|part|portion|region|area|section|zone|side|left|right))"
    ):
        add(_end(_LEVELS[m.group(1)], m.group(0), m.start()))
    # P4 centre
    for m in text.take(
        r"\b(?:(?:in|at|near|toward|towards|around|close\s+to)\s+)?(?:the\s+)?(?:very\s+)?(?:exact\s+)?"
        r"(?:center|middle|centre)\b|\bcentral(?:ly)?(?:\s+(?:located|placed|positioned|situated))?\b"
        r"|\bcent(?:er|re)d\b"
    ):
        add(_centre(m.group(0), m.start()))
    # P2 quadrants
    area = (
        r"(?:[\s-]+(?:quadrant|part|portion|region|area|section|side|half|zone|aspect"
        r"|corner\s+region))?"
    )
    lead = r"(?:(?:on|in|at|to|toward|towards|within|into)\s+)?(?:the\s+)?"
    for m in text.take(rf"\b{lead}{_LEVEL}[\s-]*{_SIDE}(?:[\s-]hand)?{area}\b"):
        add(_quadrant(_LEVELS[m.group(1)], m.group(2), m.group(0), m.start()), side=True)
    for m in text.take(rf"\b{lead}{_SIDE}[\s-]+{_LEVEL}{area}\b"):
        add(_quadrant(_LEVELS[m.group(2)], m.group(1), m.group(0), m.start()), side=True)
    # P1 halves
    for m in text.take(
        r"\b(?:(?:higher|high|further|farther)\s+up|up\s+high|(?:lower|low|further|farther)\s+down"
        r"|(?:high|low)(?=\s+(?:in|on|within)\s+the))\b"
    ):
        level = "upper" if "up" in m.group(0) or m.group(0).startswith("high") else "lower"
        add(_half(level, m.group(0), m.start()))
    half_noun = r"(?:[\s-]+(?:half|part|portion|region|area|section|zone|side|aspect))?"
    for m in text.take(rf"\b{lead}{_LEVEL}{half_noun}\b"):
        add(_half(_LEVELS[m.group(1)], m.group(0), m.start()))
    for m in text.take(rf"\b{lead}{_SIDE}(?:[\s-]hand)?{half_noun}\b"):
        add(_half(m.group(1), m.group(0), m.start()), side=True)


_COORDINATED = re.compile(r"[\s-]*(?:,?\s*(?:or|nor)\s+(?:the\s+|a\s+|an\s+|one\s+)?)?")


def _negate(p: _Parser, negators: list[tuple[int, int, str]]) -> None:
    """Each negator negates the first claim after it in its clause, with the claims of the
    same phrase and those joined to it by "or"/"nor" ("not on the left or at the top"); a claim
    with no negation semantics, or a negator with nothing to negate, is a problem."""
    original = p.text.original
    order = sorted(negators)
    claims = sorted(range(len(p.out.claims)), key=lambda k: p.out.claims[k].start)
    for i, (_, end, word) in enumerate(order):
        limit = order[i + 1][0] if i + 1 < len(order) else len(original)
        stop = _SCOPE_BREAK.search(original, end, limit)
        scope_end = stop.start() if stop else limit
        after = [k for k in claims if end <= p.out.claims[k].start < scope_end]
        scope: list[int] = []
        last = None
        for k in after:
            claim = p.out.claims[k]
            if last is not None:
                gap = original[last.end : claim.start] if claim.start > last.end else ""
                if not _COORDINATED.fullmatch(gap):
                    break
            last = claim
            # "not the larger of the two": the count names the set compared within, it stays
            # asserted (negating it would turn a true query into a false one)
            if scope and claim.kind == "count":
                continue
            scope.append(k)
        judged = [a for a, pos in p.appearance_at if end <= pos < scope_end]
        said = re.sub(r"\s+", " ", word.strip())
        if not scope and not judged:
            p.out.problems.append(
                ("unverifiable", f"'{said}' negates nothing the verifier can check")
            )
            continue
        for k in scope:
            claim = p.out.claims[k]
            if claim.opposite is None:
                p.out.problems.append(
                    (
                        "unverifiable",
                        f"'{said} ... {claim.phrase}': the negation of this claim cannot be "
                        "checked",
                    )
                )
            p.out.claims[k] = replace(
                claim, negated=not claim.negated, phrase=f"{said} ... {claim.phrase}"
            )


def _leftovers(p: _Parser, extra_neutral: Iterable[str]) -> None:
    """Tokens left over by kind, then neutral words; what remains is unknown."""
    text, out = p.text, p.out
    for m in re.finditer(TOKEN, text.text):
        tok = text.token(m.group(0))
        if tok.kind == "struct":
            out.named.append((tok.text, str(tok.value)))
            if tok.plural:
                out.claims.append(_count(">=", 2, str(tok.value), tok.text, m.start()))
        elif tok.kind == "organ":
            out.organs.append((tok.text, tok.value))
        else:
            out.modalities.append((tok.text, tok.value))
        text.blank(m.start(), m.end())
    nouns = vocab.generic_nouns() - {"one", "ones", "part", "portion"}
    out.generic += [m.group(1) for m in re.finditer(vocab.alternation(tuple(nouns)), text.text)]
    neutral = vocab.neutral_words() | {vocab.american(w.lower()) for w in extra_neutral}
    text.take(vocab.alternation(tuple(neutral)))
    for m in re.finditer(r"[a-z0-9][a-z0-9'*+&/-]*", text.text):
        word = m.group(0)
        base = re.sub(r"'s?$", "", word)
        if base in neutral or not base:
            continue
        out.unknown.append(word)


class _Parser:
    """The state of one parse: the text, the result, and the lexicon regexes."""

    def context_only(self, m: re.Match) -> bool:
        """Whether every structure in a match is a context structure (the brain), not a
        target label: "the left half of the brain", never "the left half of the edema"."""
        return all(
            self.text.token(t).value not in self.labels for t in re.findall(TOKEN, m.group(0))
        )

    def said(self, phrase: str) -> str:
        """A phrase of the working text with its tokens written out again."""
        return re.sub(TOKEN, lambda m: self.text.token(m.group(0)).text, phrase).strip()

    def __init__(self, query: str, labels: Collection[str]):
        self.text = _Text(query)
        self.out = Parsed(claims=[])
        self.g = _grammar()
        self.tables = _tables()
        self.labels = labels
        self.sided: list[int] = []
        self.appearance_at: list[tuple[str, int]] = []

    def add(self, claim: Claim, *, side: bool = False) -> None:
        end = claim.start + len(claim.phrase)
        self.out.claims.append(replace(claim, phrase=self.said(claim.phrase), end=end))
        if side:
            self.sided.append(claim.start)


def singles_out(parsed: Parsed, target: Mapping, scene: Scene) -> tuple[bool, str]:
    """Whether the claims hold for the target and for no other of its candidates (every target
    of the image when the query names no label: ``scene.by_label`` False)."""
    n = scene.expected(target)
    what = f"{target['label']} candidate" if scene.by_label else "target"
    if n <= 1:
        return True, f"only {what} in the image"
    others = scene.others(target)
    if others is None:
        known = len(scene.candidates(target))
        return False, f"cannot check: {n} {what}s recorded, {known} known"
    also = [s["id"] for s in others if all(c.holds(s, scene) for c in parsed.claims)]
    if also:
        return False, f"ambiguous: the query also fits {len(also)} other {what}(s) of {n}"
    return True, f"singles out 1 of {n} {what}s"
