"""The offline template generator: varied referring expressions built only from verified cues.

Every word that states a fact comes from :mod:`.vocab`, whose predicates the verifier also uses,
so a template query says nothing its cues do not support. Wording is drawn with a random
generator seeded from ``(seed, record id)``: the same seed gives the same queries whatever the
batch order or process. Image sides are always "of the image"; patient sides always
"the patient's left/right" (volumes only). Targets that share their label with other candidates
in the image always get a disambiguating relation (largest, leftmost, second largest, ...).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import claims, vocab
from .base import Generated, Generator, Target

TEMPLATE_VERSION = "template-v2"
_ADVERBS = {"vertical": "vertically", "horizontal": "horizontally", "oblique": "obliquely"}
_SIDE_WORD = {"upper": "top", "lower": "bottom"}


def _rng(seed: int, record_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{record_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def location_phrases(record: Mapping) -> list[str]:
    """Image-space location phrases true of the record (always saying "of the image").

    Halves (with the dead band) decide "left side", "upper part", "toward the upper left"; the
    3x3 grid decides the stronger "in the upper left part", "near the top" and "center", so a
    target in the central cell is never said to be near an edge or in a corner region.
    """
    h, v = vocab.horizontal(record), vocab.vertical(record)
    cell = record["spatial"]["grid_cell"]
    row = record["spatial"]["grid_row"]
    out = []
    if h != "center" and v != "middle" and cell != "center":
        out.append(f"toward the {v} {h} of the image")
        if cell == f"{v} {h}":
            out.append(f"in the {v} {h} part of the image")
    if h != "center":
        out += [f"on the {h} side of the image", f"in the {h} half of the image"]
    if v != "middle":
        out.append(f"in the {v} part of the image")
        if row == v:
            out.append(f"near the {_SIDE_WORD[v]} of the image")
    if cell == "center":
        out += ["in the center of the image", "near the middle of the image"]
    return out


def patient_phrases(record: Mapping) -> list[str]:
    side = record["spatial"]["patient_side"]
    if side not in ("left", "right"):
        return []
    return [f"on the patient's {side} side", f"on the patient's {side}"]


def shape_phrase(record: Mapping, rng: random.Random) -> tuple[str, str | None]:
    """A true size word and, when one applies, a true shape word."""
    shape = record["shape"]
    size = rng.choice(vocab.SIZE_PHRASES[shape["size_category"]])
    words = [w for w, test in vocab.SHAPE_PREDICATES.items() if test(shape)]
    if not words:
        return size, None
    word = rng.choice(words)
    return size, ("irregularly shaped" if word == "irregular" else word)


def disambiguator(record: Mapping, term: str, rng: random.Random, *, by_size: bool = True) -> Lead:
    """A phrase naming this candidate among several of its label ("the larger polyp" of two,
    "the leftmost polyp", "the second largest polyp"). ``by_size=False`` prefers a relation that
    is not about size, when there is one (the phrase goes on to state the size)."""
    rel = record["relations"]
    two = record["num_candidates"] == 2
    sized: list[Lead] = []
    for flag, comparative in (("largest", "larger"), ("smallest", "smaller")):
        if rel[flag]:
            sized.append(Lead(f"the {comparative if two else flag} {term}", False, True, flag))
    placed: list[Lead] = []
    for flag, side in (("leftmost", "left"), ("rightmost", "right")):
        if rel[flag]:
            placed += [
                Lead(f"the {flag} {term}", True, False, flag),
                Lead(f"the {term} farthest to the {side}", True, False, flag),
            ]
    placed += [
        Lead(f"the {f} {term}", False, False, f) for f in ("uppermost", "lowermost") if rel[f]
    ]
    rank = rel["size_rank"]
    if not sized and not placed and rank in vocab.ORDINAL_WORDS:
        sized.append(Lead(f"the {vocab.ORDINAL_WORDS[rank]} largest {term}", False, True, "rank"))
    options = placed if (placed and not by_size) else sized + placed
    if not options:
        raise ValueError(f"{record['id']}: no relation singles this candidate out")
    return rng.choice(options)


@dataclass(frozen=True)
class Lead:
    """A disambiguating phrase; ``sided`` when it says left/right (so the image must be named in
    the same phrase), ``sized`` when it is about size (so no size word should follow)."""

    text: str
    sided: bool
    sized: bool
    relation: str


class TemplateGenerator(Generator):
    """Deterministic (for a seed), offline; several queries per target in distinct styles."""

    name = "template"
    prompt_version = TEMPLATE_VERSION

    def __init__(self, seed: int = 0, queries_per_target: int = 3):
        super().__init__()
        self.seed = seed
        self.k = queries_per_target

    def generate(self, targets: Sequence[Target]) -> list[Generated]:
        return [self.one(t) for t in targets]

    def one(self, target: Target) -> Generated:
        record = target.record
        rng = _rng(self.seed, record["id"])
        many = record["num_candidates"] > 1
        builders = {
            "location": self._location,
            "morphology": self._morphology,
            "relational": self._relational,
            "clinical": self._clinical,
        }
        styles = list(builders)
        rng.shuffle(styles)
        if many:  # the relational style is the natural one when there are several
            styles.remove("relational")
            styles.insert(0, "relational")
        items: list[dict] = []
        seen: set[str] = set()
        for attempt in range(4 * self.k):
            if len(items) == self.k:
                break
            style = styles[attempt % len(styles)]
            text = builders[style](target, rng)
            # one spelling per query: the dialect of its first marked word ("tumour", "edema")
            text = vocab.in_dialect(text, vocab.dialect(text))
            if text and text not in seen:
                seen.add(text)
                items.append({"text": text, "style": style})
        return Generated(items)

    # ---- styles ---------------------------------------------------------------------------
    def _term(self, target: Target, rng: random.Random, *, plain: bool = False) -> str:
        """A clinical term for the label. Synonyms that would claim something by themselves
        (e.g. "tumour with surrounding edema") are left out; with several candidates, or with
        ``plain`` (a phrase follows that names another structure), so are mass nouns and terms
        with a trailing phrase ("necrosis", "FLAIR hyperintensity around the tumour"), which do
        not read as one of several ("the larger necrosis")."""
        terms = [t for t in target.spec.terms if not claims.parse(t, target.vocabulary).claims]
        if target.record["num_candidates"] > 1:
            terms = [t for t in terms if vocab.countable(t)] or terms
        if plain:
            terms = [t for t in terms if not vocab.postmodified(t)] or terms
        return rng.choice(terms or [target.spec.display])

    def _location(self, target: Target, rng: random.Random) -> str:
        record = target.record
        term = self._term(target, rng)
        phrases = location_phrases(record)
        patient = patient_phrases(record)
        if record["num_candidates"] > 1:
            lead = disambiguator(record, term, rng)
            # "the leftmost polyp toward the upper right": true of two polyps on the right, but
            # it reads as a contradiction, so no phrase points the other way
            away = _AWAY.get(lead.relation, set())
            phrases = [p for p in phrases if not set(p.split()) & away]
            if lead.sided:  # "the leftmost polyp in the upper part of the image": one phrase
                return f"{lead.text} {rng.choice(phrases or ['in the image'])}"
            if not (phrases or patient):
                return lead.text
            where = rng.choice(patient) if patient and rng.random() < 0.5 else rng.choice(phrases)
            return f"{lead.text}, {where}"
        where = rng.choice(patient) if patient and rng.random() < 0.5 else rng.choice(phrases)
        return rng.choice([f"the {term} {where}", f"the {term} located {where}"])

    def _morphology(self, target: Target, rng: random.Random) -> str:
        record = target.record
        term = self._term(target, rng)
        size, shape = shape_phrase(record, rng)
        orientation = record["shape"]["orientation"]
        if record["num_candidates"] > 1:
            lead = disambiguator(record, term, rng, by_size=False)
            anchor = " in the image" if lead.sided else ""
            if lead.sized:  # "the largest polyp, which is large" says the size twice
                return f"{lead.text}{anchor}, which is {shape}" if shape else ""
            what = f"{size} and {shape}" if shape else size
            return f"{lead.text}{anchor}, which is {what}"
        described = f"the {size} {shape} {term}" if shape else f"the {size} {term}"
        if shape in ("elongated", "oval") and orientation in _ADVERBS and rng.random() < 0.5:
            return f"{described} oriented {_ADVERBS[orientation]}"
        return described

    def _relational(self, target: Target, rng: random.Random) -> str:
        record = target.record
        rel = record["relations"]
        n = record["num_candidates"]
        if n == 1:
            term = self._term(target, rng)
            options = [f"the only {term} in the image"]
            if vocab.countable(term):
                options.append(f"the single {term} visible in the image")
            structures = [
                (kind, target.structures[name])
                for kind in ("inside", "adjacent_to")
                for name in rel[kind]
                if name in target.structures
            ]
            if structures:
                word = {"inside": "inside", "adjacent_to": "next to"}
                plain = self._term(target, rng, plain=True)
                options += [f"the {plain} {word[kind]} the {other}" for kind, other in structures]
            return rng.choice(options)
        term = self._term(target, rng)
        count = vocab.COUNT_WORDS.get(n)
        plural = vocab.plural(term)
        options = []
        if count:
            if n == 2:
                options += [f"the {w} of the two {plural}" for f, w in _COMPARATIVES if rel[f]]
            else:
                options += [f"the {f} of the {count} {plural}" for f in _SIZE_FLAGS if rel[f]]
                rank = rel["size_rank"]
                if 1 < rank < n and rank in vocab.ORDINAL_WORDS:
                    ordinal = vocab.ORDINAL_WORDS[rank]
                    options.append(f"the {ordinal} largest of the {count} {plural}")
        lead = disambiguator(record, term, rng)
        options.append(f"{lead.text} in the image" if lead.sided else lead.text)
        return rng.choice(options)

    def _clinical(self, target: Target, rng: random.Random) -> str:
        record, spec = target.record, target.spec
        key = vocab.modality_key(record["modality"])
        noun = vocab.MODALITY_NOUNS.get(key, "image") if key else "image"
        term = self._term(target, rng)
        if record["num_candidates"] > 1:
            return f"{disambiguator(record, term, rng).text} seen on this {noun}"
        size, _ = shape_phrase(record, rng)
        body = record["body_part"]
        options = [
            f"the {term} seen on this {noun}",
            f"the {size} {term} visible on this {noun}",
            f"locate the {term} on this {noun}",
        ]
        if body and all(body.lower() not in t.lower() for t in spec.terms):
            options.append(f"the {term} on this {noun} of the {body}")
        return rng.choice(options)


_COMPARATIVES = (("largest", "larger"), ("smallest", "smaller"))
# location words that point away from a positional superlative
_AWAY = {
    "leftmost": {"right"},
    "rightmost": {"left"},
    "uppermost": {"lower", "bottom"},
    "lowermost": {"upper", "top"},
}
_SIZE_FLAGS = ("largest", "smallest")
