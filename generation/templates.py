"""The offline template generator: referring expressions a clinician would sign, built only from
claims that a viewer looking at the image would agree with.

Every position, comparison and size claim is decided by the viewer rules of
:mod:`medground_hf.margins` (clear margins, never a pixel's difference); the label's
:class:`~medground_hf.source.LabelSpec` says how its size may be worded (clinical classes in mm,
none for biometry, else only as a share of the image) and how pieces of one structure are named
("enhancing foci"). Queries are noun phrases, never requests. Where several candidates of the
label share the image, each query carries a claim that singles the target out, and the queries
of one target use different ones where the target has several; where nothing visible singles it
out, the target is rejected (stage ``generation``) instead of being given a weak claim.

Wording is drawn with a random generator seeded from ``(seed, record id)``: the same seed gives
the same queries whatever the batch order or process. Image sides are always "of the image";
patient sides always "the patient's left/right" (volumes only).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from medground_hf import margins

from . import claims, vocab
from .base import Generated, Generator, Target

TEMPLATE_VERSION = "template-v3"
STYLES = ("location", "morphology", "relational", "clinical")
# Body parts that say nothing: an unset body part never appears in a query.
UNSET_BODY_PARTS = frozenset({"", "unknown", "various", "other", "none", "n/a", "unspecified"})
_OPPOSITE = {"left": "right", "right": "left", "upper": "lower", "lower": "upper"}
_EDGE_WORD = {"left": "left", "right": "right", "top": "top", "bottom": "bottom"}
_HOURS = (
    "twelve one two three four five six seven eight nine ten eleven".split()  # noqa: SIM905
)


def _rng(seed: int, record_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{record_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class Claim:
    """One true statement about the target, in several wordings.

    ``key`` names the statement (two queries with the same key make the same claim); ``style``
    is the query style it gives; ``away`` are words that would point the other way if another
    phrase of the same query used them ("the leftmost polyp, on the right side of the image" is
    true of two polyps on the right, but reads as a contradiction)."""

    key: str
    style: str
    phrases: tuple[str, ...]
    away: frozenset[str] = frozenset()


# ---- position in the image (rules P1-P6) -------------------------------------------------------
def location_phrases(record: Mapping) -> list[str]:
    """Image-space location phrases true of the record under the viewer rules (always saying
    "of the image"): the corner it lies in, its quadrant, its half, the centre, an edge and, on
    endoscopy frames, its clock-face position."""
    out: list[str] = []
    corner = margins.corner(record)
    side, level = margins.image_half(record), margins.image_level(record)
    if corner:
        out += [f"in the {corner} corner of the image", f"toward the {corner} corner of the image"]
    if side and level:
        out += [
            f"in the {level} {side} part of the image",
            f"toward the {level} {side} of the image",
        ]
    if side:
        out += [f"on the {side} side of the image", f"in the {side} half of the image"]
    if level:
        top = "top" if level == "upper" else "bottom"
        out += [f"in the {level} part of the image", f"in the {top} half of the image"]
    if margins.central(record):
        out += ["in the centre of the image", "in the middle of the image"]
    for edge in sorted(margins.edges(record)):
        out.append(f"near the {_EDGE_WORD[edge]} edge of the image")
    if vocab.modality_key(record["modality"]) == "endoscopy":
        hour = margins.clock_hour(record)
        if hour is not None:
            nearest = round(hour) % 12
            if margins.at_clock(record, nearest or 12):
                out.append(f"at the {_HOURS[nearest]} o'clock position in the image")
    return out


def patient_phrases(record: Mapping) -> list[str]:
    side = record["spatial"]["patient_side"]
    if side not in ("left", "right"):
        return []
    return [f"on the patient's {side} side", f"on the patient's {side}"]


# ---- size and shape (rules Z1-Z3) ----------------------------------------------------------------
def size_phrases(record: Mapping, target: Target) -> tuple[list[str], list[str]]:
    """(size adjectives, image-relative size phrases) true of the target.

    Adjectives are the label's clinical classes by the largest dimension in mm (rule Z1), only
    with a known pixel spacing; a biometric label (fetal head) gets none at all, not even
    relative to the image; any other label gets its size only as a share of the image (Z2),
    and only where it has no clinical class."""
    spec = target.spec
    if spec.biometric:
        return [], []
    adjectives = list(spec.size_words(margins.largest_dimension_mm(record)))
    if adjectives:  # the physical size is the statement; "a large polyp occupying a small part
        return adjectives, []  # of the image" is true but reads as a contradiction
    share = margins.image_share(record)
    relative = []
    if share >= margins.MOST_OF_IMAGE:
        relative += ["filling most of the image", "occupying most of the image"]
    elif share >= margins.LARGE_PART_OF_IMAGE:
        relative.append("occupying a large part of the image")
    elif share <= margins.SMALL_PART_OF_IMAGE:
        relative += ["occupying a small part of the image", "filling a small portion of the image"]
    return adjectives, relative


def shape_words(record: Mapping, target: Target) -> list[str]:
    """True shape words; none for a biometric label (a "round fetal head" reads as a finding)."""
    if target.spec.biometric:
        return []
    words = [w for w, test in vocab.SHAPE_PREDICATES.items() if test(record["shape"])]
    return ["irregularly shaped" if w == "irregular" else w for w in words]


# ---- what singles a target out among its candidates (rules S1-S4) ------------------------------
def _names(target: Target, rng: random.Random) -> tuple[str, str]:
    """(one, several): how the query names the target and its candidates. Pieces of one
    structure are named as such ("enhancing focus", "enhancing foci")."""
    spec, n = target.spec, target.record["num_candidates"]
    if spec.fragments and n > 1:
        return spec.pieces
    term = _term(target, rng, several=n > 1)
    return term, vocab.plural(term)


@lru_cache(maxsize=256)
def _claim_free(named: tuple[str, ...], vocabulary: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The terms that claim nothing by themselves (the same few for every target of a label)."""
    return tuple(t for t in named if not claims.parse(t, dict(vocabulary)).claims)


def _term(target: Target, rng: random.Random, *, several: bool = False, plain: bool = False) -> str:
    """A clinical term for the label. Synonyms that would claim something by themselves (e.g.
    "tumour with surrounding edema") are left out; with several candidates, or with ``plain``
    (a phrase follows that names another structure), so are mass nouns and terms with a
    trailing phrase ("necrosis", "FLAIR hyperintensity around the tumour"), which do not read as
    one of several ("the larger necrosis")."""
    spec = target.spec
    terms = list(_claim_free((spec.display, *spec.synonyms), tuple(target.vocabulary.items())))
    if several:
        terms = [t for t in terms if vocab.countable(t)] or terms
    if plain:
        terms = [t for t in terms if not vocab.postmodified(t)] or terms
    return rng.choice(terms or [spec.display])


def _related(target: Target, kind: str) -> list[str]:
    """The structures a target lies ``kind`` (inside / adjacent_to) that a query can name: one of
    a kind in the image ("next to the enhancing tumour" is ambiguous beside three enhancing
    foci), never its own label ("the enhancing focus inside the enhancing tumour" names a
    sibling piece as if it were another structure)."""
    own = target.record["label"]
    count = Counter(s["label"] for s in target.siblings)
    return [
        n
        for n in target.record["relations"][kind]
        if n in target.structures and n != own and count.get(n, 1) == 1
    ]


def _others(target: Target) -> list[Mapping]:
    record = target.record
    return [s for s in target.siblings if s["label"] == record["label"] and s["id"] != record["id"]]


# direction -> (superlative, "farthest ..." phrase (none for up/down: "the focus highest" reads
# badly), "the ... of the two", words pointing away)
_EXTREMES = {
    "left": ("leftmost", "farthest to the left", "left one", frozenset({"right"})),
    "right": ("rightmost", "farthest to the right", "right one", frozenset({"left"})),
    "up": ("uppermost", "", "higher", frozenset({"lower", "bottom"})),
    "down": ("lowermost", "", "lower", frozenset({"upper", "top"})),
}
_BEYOND = {"left": "to the left of", "right": "to the right of", "up": "above", "down": "below"}


@dataclass(frozen=True)
class _Among:
    """A target among its candidates, and how a query names one and several of them."""

    record: Mapping
    others: list[Mapping]
    one: str
    several: str

    @property
    def two(self) -> bool:
        return not self.others[1:]

    @property
    def of_all(self) -> str:
        """ "of the three polyps" (empty past ten)."""
        count = vocab.COUNT_WORDS.get(len(self.others) + 1)
        return f"of the {count} {self.several}" if count else ""


def _extremes(t: _Among) -> list[Claim]:
    """S2: clearly the farthest in a direction ("the leftmost polyp in the image")."""
    out = []
    for direction, (most, far, pair, away) in _EXTREMES.items():
        if not margins.extremal(t.record, t.others, direction):
            continue
        phrases = [f"the {most} {t.one} in the image"]
        if far:
            phrases.append(f"the {t.one} {far} in the image")
        if t.two:
            phrases.append(f"the {pair} of the two {t.several} in the image")
            phrases.append(f"the {t.one} {_BEYOND[direction]} the other {t.one} in the image")
        out.append(Claim(f"extreme-{direction}", "location", tuple(phrases), away))
    return out


def _sizes(t: _Among) -> list[Claim]:
    """S3: visibly the largest or smallest, or a clear rank ("the second largest ...")."""
    out = []
    for flag, test in (("largest", margins.largest), ("smallest", margins.smallest)):
        if test(t.record, t.others):
            word = {"largest": "larger", "smallest": "smaller"}[flag] if t.two else flag
            phrases = [f"the {word} {t.one}"]
            if t.two:
                phrases.append(f"the {word} of the two {t.several}")
            elif t.of_all:
                phrases.append(f"the {flag} {t.of_all}")
            out.append(Claim(f"size-{flag}", "relational", tuple(phrases)))
    n = len(t.others) + 1
    for from_largest, word in ((True, "largest"), (False, "smallest")):
        rank = margins.size_rank_clear(t.record, t.others, from_largest=from_largest)
        if rank and 1 < rank < n and rank in vocab.ORDINAL_WORDS:
            ordinal = vocab.ORDINAL_WORDS[rank]
            phrases = [f"the {ordinal} {word} {t.one}"]
            if t.of_all:
                phrases.append(f"the {ordinal} {word} {t.of_all}")
            out.append(Claim(f"rank-{word}-{rank}", "relational", tuple(phrases)))
    return out


def _centrality(t: _Among) -> list[Claim]:
    """S4: clearly nearer the image centre, or the edge, than every other candidate."""
    nearer = "nearer" if t.two else "nearest"
    out = []
    if margins.nearer_centre(t.record, t.others):
        phrases = (f"the {t.one} {nearer} the centre of the image",)
        out.append(Claim("nearer-centre", "location", phrases, frozenset({"corner", "edge"})))
    if margins.nearer_edge(t.record, t.others):
        phrases = (f"the {t.one} {nearer} the edge of the image",)
        out.append(Claim("nearer-edge", "location", phrases, frozenset({"centre", "middle"})))
    return out


def _regions(t: _Among) -> list[Claim]:
    """P1/P2: a half (or else a quadrant) of the image the target lies in and every other
    candidate clearly lies outside of; a patient side no other candidate is on."""
    record, others = t.record, t.others
    side, level = margins.image_half(record), margins.image_level(record)
    out = []
    if side and all(margins.image_half(o) == _OPPOSITE[side] for o in others):
        phrases = (
            f"the {t.one} on the {side} side of the image",
            f"the {t.one} in the {side} half of the image",
        )
        out.append(Claim(f"half-{side}", "location", phrases, frozenset({_OPPOSITE[side]})))
    if level and all(margins.image_level(o) == _OPPOSITE[level] for o in others):
        phrases = (f"the {t.one} in the {level} part of the image",)
        out.append(Claim(f"half-{level}", "location", phrases, frozenset({_OPPOSITE[level]})))
    outside = side and level and all(
        margins.image_half(o) == _OPPOSITE[side] or margins.image_level(o) == _OPPOSITE[level]
        for o in others
    )  # fmt: skip
    if outside and not out:
        phrases = (f"the {t.one} in the {level} {side} part of the image",)
        away = frozenset({_OPPOSITE[side], _OPPOSITE[level]})
        out.append(Claim(f"quadrant-{level}-{side}", "location", phrases, away))
    patient = record["spatial"]["patient_side"]
    if patient in ("left", "right") and all(
        o["spatial"]["patient_side"] == _OPPOSITE[patient] for o in others
    ):
        phrases = (
            f"the {t.one} on the patient's {patient} side",
            f"the {t.one} on the patient's {patient}",
        )
        out.append(Claim(f"patient-{patient}", "location", phrases))
    return out


def _neighbours(t: _Among, target: Target) -> list[Claim]:
    """S5: lies inside or next to a structure no other candidate does."""
    out = []
    for kind, verb in (("adjacent_to", "next to"), ("inside", "inside")):
        for name in _related(target, kind):
            if not any(name in o["relations"][kind] for o in t.others):
                phrases = (f"the {t.one} {verb} the {target.structures[name]}",)
                out.append(Claim(f"{kind}-{name}", "relational", phrases))
    return out


def distinguishing(target: Target, one: str, several: str) -> list[Claim]:
    """Every claim that singles the target out among the other candidates of its label, each
    true under the viewer rules: a clear extreme of position (S2) or size (S3), a clear size
    rank, nearer the centre or the edge (S4), a half or quadrant of the image that every other
    candidate clearly lies outside of, a patient side or a neighbouring structure no other
    candidate has. ``one`` and ``several`` name a candidate and the candidates."""
    record = target.record
    others = _others(target)
    if not others or len(others) != record["num_candidates"] - 1:
        return []
    among = _Among(record, others, one, several)
    return [
        *_extremes(among),
        *_sizes(among),
        *_centrality(among),
        *_regions(among),
        *_neighbours(among, target),
    ]


# ---- describing a target (true, not needed to single it out) ------------------------------------
@dataclass(frozen=True)
class Modifiers:
    """True descriptive words about a target, bare, to attach to a noun phrase."""

    where: list[str]  # "in the upper left part of the image"
    patient: list[str]  # "on the patient's left"
    sizes: list[str]  # clinical size adjectives: "diminutive"
    share: list[str]  # "occupying a small part of the image"
    shapes: list[str]  # "round", "irregularly shaped"


def modifiers(target: Target) -> Modifiers:
    record = target.record
    adjectives, relative = size_phrases(record, target)
    return Modifiers(
        location_phrases(record), patient_phrases(record), adjectives, relative,
        shape_words(record, target),
    )  # fmt: skip


def descriptions(target: Target, one: str, rng: random.Random) -> list[Claim]:
    """True statements about a lone target as noun phrases, by style: where it is, its size and
    shape, the structures it lies in or next to."""
    words = modifiers(target)
    out: list[Claim] = []
    for key, found in (("where", words.where), ("patient", words.patient)):
        if found:
            phrases = [f"the {one} {p}" for p in found] + [f"the {one} located {p}" for p in found]
            out.append(Claim(key, "location", tuple(phrases)))
    if words.sizes:
        out.append(Claim("size", "morphology", tuple(f"the {a} {one}" for a in words.sizes)))
    if words.share:
        out.append(Claim("share", "morphology", tuple(f"the {one} {r}" for r in words.share)))
    if words.shapes:
        out.append(Claim("shape", "morphology", tuple(f"the {s} {one}" for s in words.shapes)))
    for kind, verb in (("inside", "inside"), ("adjacent_to", "next to")):
        for name in _related(target, kind):
            plain = _term(target, rng, plain=True)
            phrases = (f"the {plain} {verb} the {target.structures[name]}",)
            out.append(Claim(f"{kind}-{name}", "relational", phrases))
    return out


def _modality_noun(record: Mapping) -> str:
    key = vocab.modality_key(record["modality"])
    return vocab.MODALITY_NOUNS.get(key, "image") if key else "image"


def body_part(record: Mapping, target: Target) -> str | None:
    """The record's body part when it is set and the label's terms do not already name it."""
    body = (record["body_part"] or "").strip()
    if body.lower() in UNSET_BODY_PARTS:
        return None
    if any(body.lower() in t.lower() for t in target.spec.terms):
        return None
    return body


class TemplateGenerator(Generator):
    """Deterministic (for a seed), offline; several queries per target in distinct styles."""

    name = "template"
    prompt_version = TEMPLATE_VERSION
    sees_images = False  # written from the cues

    def __init__(self, seed: int = 0, queries_per_target: int = 3):
        super().__init__()
        self.seed = seed
        self.k = queries_per_target

    def generate(self, targets: Sequence[Target]) -> list[Generated]:
        return [self.one(t) for t in targets]

    def one(self, target: Target) -> Generated:
        rng = _rng(self.seed, target.record["id"])
        if target.record["num_candidates"] > 1:
            return self._among_several(target, rng)
        return self._alone(target, rng)

    def _finish(self, drafts: list[tuple[str, str]]) -> Generated:
        """Each query in one spelling (the dialect of its first marked word), duplicates out."""
        items, seen = [], set()
        for text, style in drafts:
            text = vocab.in_dialect(text, vocab.dialect(text))
            if text not in seen:
                seen.add(text)
                items.append({"text": text, "style": style})
        return Generated(items[: self.k])

    # ---- one candidate of its label ------------------------------------------------------------
    def _alone(self, target: Target, rng: random.Random) -> Generated:
        record = target.record
        one = _term(target, rng)
        noun = _modality_noun(record)
        by_style: dict[str, list[Claim]] = {s: [] for s in STYLES}
        for claim in descriptions(target, one, rng):
            by_style[claim.style].append(claim)
        only = [f"the only {one} in the image"]
        if vocab.countable(one):
            only.append(f"the single {one} visible in the image")
        by_style["relational"].append(Claim("only", "relational", tuple(only)))
        clinical = [f"the {one} seen on this {noun}", f"the {one} visible on this {noun}"]
        body = body_part(record, target)
        if body:
            clinical.append(f"the {one} in the {body} on this {noun}")
        by_style["clinical"].append(Claim("clinical", "clinical", tuple(clinical)))
        styles = list(STYLES)
        rng.shuffle(styles)
        drafts: list[tuple[str, str]] = []
        used: set[str] = set()
        # one claim per query, each from another style, then further claims of any style
        order = [s for s in styles if by_style[s]] + [s for s in styles if by_style[s]] * self.k
        for style in order:
            if len(drafts) >= 2 * self.k:
                break
            fresh = [c for c in by_style[style] if c.key not in used] or by_style[style]
            claim = rng.choice(fresh)
            used.add(claim.key)
            drafts.append((rng.choice(claim.phrases), style))
        return self._finish(drafts)

    # ---- one of several candidates -------------------------------------------------------------
    def _among_several(self, target: Target, rng: random.Random) -> Generated:
        record = target.record
        one, several = _names(target, rng)
        leads = distinguishing(target, one, several)
        if not leads:
            return Generated(
                failure=(
                    "generation",
                    f"nothing a viewer can see singles out this {record['label']} among its "
                    f"{record['num_candidates']} candidates (no clear extreme of position or "
                    "size, no half of the image or side of its own)",
                )
            )
        rng.shuffle(leads)
        styles = list(STYLES)
        rng.shuffle(styles)
        words = modifiers(target)
        noun = _modality_noun(record)
        drafts: list[tuple[str, str]] = []
        for i in range(2 * self.k):
            lead = leads[i % len(leads)]  # a different claim per query while there are others
            style = styles[i % len(styles)]
            text = rng.choice(lead.phrases)
            # "in the image" anchors a left/right claim to the image within its phrase
            sided = lead.key in ("extreme-left", "extreme-right")
            bare = text if sided else text.removesuffix(" in the image")
            if style == "clinical":
                text = f"{text.removesuffix(' in the image')} seen on this {noun}"
            elif style == "location":
                where = [p for p in words.where + words.patient if not set(p.split()) & lead.away]
                text = f"{bare}, {rng.choice(where)}" if where else text
            elif style == "morphology":
                sized = lead.key.startswith(("size", "rank"))  # not "the largest, which is large"
                if words.share and not sized and rng.random() < 0.5:
                    text = f"{bare}, {rng.choice(words.share)}"
                elif words.shapes:
                    text = f"{text}, which is {rng.choice(words.shapes)}"
            # a bare lead (nothing added) is a relational query: it names one of several
            drafts.append((text, "relational" if text in lead.phrases else style))
        return self._finish(drafts)
