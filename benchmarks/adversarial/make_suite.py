"""Write the adversarial verification suite: true and false queries on the three sample corpora.

Each line of the output is ``{"id", "text", "truth", "claim_type", "negated", "note"}``: a query
about one built target, worded as a VLM or a clinician would write it, and whether a viewer
would agree with it under the shared viewer rules (``truth.py`` computes that from the raw
masks and affines, never from the project's cues). A query is true only when every claim in it
holds for its target and, together, the claims fit no other candidate of its label (else it is
``ambiguous``, false); claims too close to a rule's threshold to call are not written.

Claim types: plain, half, quadrant, corner, centre, edge, clock, relation, extremal, size_compare,
nearer_centre, adjacency, count, patient_side, direction, lobe, organ, modality, size_bare,
size_image, shape, needs_judge (appearance words no rule checks: rejected without a judge),
unverifiable (patient sides and anatomical directions on 2D images), unanchored_side (left/right
that does not say whose), ambiguous. ``negated`` marks queries whose claim is negated ("not",
"no", "without", "other than", "rather than", "except", "neither", "away from").

Run:  python benchmarks/adversarial/make_suite.py [--data ../shared/data] [--built DIR]
      [--seed 0] [--out tests/data/adversarial/queries.jsonl]
``--built`` holds the default builds ``kvasir_seg``, ``hc18``, ``brats2013`` (made in a temporary
folder when not given); their records give the ids, nothing else.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import truth as T
from truth import Region, Rule, Scene

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_verifier import SAMPLES, build_samples  # noqa: E402  (the same default builds)

DEFAULT_OUT = REPO / "tests" / "data" / "adversarial" / "queries.jsonl"
CAP_PER_GROUP = 40  # at most this many queries per (source, claim type, truth)
SHAPE_MIN_AREA = 200  # no shape claims about smaller targets: a few pixels have no clear shape

# ---- words --------------------------------------------------------------------------------------
TERMS = {
    "polyp": ["polyp", "polyp", "colorectal polyp", "polypoid lesion", "lesion", "colonic polyp"],
    "fetal_head": ["fetal head", "fetal head", "fetal skull", "fetal cranium"],
    "necrosis": ["necrotic core", "necrotic tumour core", "necrotic core"],
    "edema": ["peritumoral edema", "edema", "oedema", "vasogenic edema", "peritumoral oedema"],
    "enhancing_tumour": ["enhancing tumour", "enhancing tumor", "enhancing tumour component"],
    "non_enhancing_tumour": ["non-enhancing tumour", "non-enhancing tumor"],
}
PLURALS = {
    "polyp": ["polyps", "colorectal polyps", "polypoid lesions", "lesions"],
    "fetal_head": ["fetal heads"],
    "necrosis": ["necrotic cores", "necrotic foci"],
    "edema": ["edema regions"],
    "enhancing_tumour": ["enhancing tumour components", "enhancing tumour foci"],
    "non_enhancing_tumour": ["non-enhancing tumour components", "non-enhancing tumour foci"],
}
ANCHORS = {  # where the target is seen; Writer.anchor() sometimes adds "seen", "visible"
    "endoscopy": [
        "in this colonoscopy image",
        "in the endoscopic image",
        "on this colonoscopy frame",
        "in the image",
        "in this endoscopic view",
        "on the colonoscopy image",
    ],
    "ultrasound": [
        "in this ultrasound image",
        "on this sonogram",
        "in the ultrasound frame",
        "in the image",
        "on this fetal ultrasound scan",
        "on the ultrasound image",
    ],
    "mri_flair": [
        "on this axial FLAIR slice",
        "in this MRI slice",
        "on the FLAIR image",
        "in the image",
        "on this axial brain MRI slice",
        "on this FLAIR slice",
    ],
    "mri_t1c": [
        "on this axial post-contrast T1 slice",
        "in this MRI slice",
        "on the contrast-enhanced T1 image",
        "in the image",
        "on this axial brain MRI slice",
        "on this T1c slice",
    ],
}
PICTURE = {
    "endoscopy": ["image", "image", "frame", "picture", "view"],
    "ultrasound": ["image", "image", "frame", "scan"],
    "mri": ["image", "image", "slice"],
}
MOST = {"left": "leftmost", "right": "rightmost", "up": "uppermost", "down": "lowermost"}
RELATIVE = {"left": "left of", "right": "right of", "up": "above", "down": "below"}
NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ---- drafts and their truth -------------------------------------------------------------------
@dataclass
class Draft:
    """A query before its truth is known: its claims as rules (with what each says)."""

    text: str
    claim_type: str
    rules: list[tuple[Rule, str]]
    negated: bool = False


@dataclass
class Item:
    id: str
    text: str
    truth: bool
    claim_type: str
    negated: bool
    note: str

    def line(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "text": self.text,
                "truth": self.truth,
                "claim_type": self.claim_type,
                "negated": self.negated,
                "note": self.note,
            }
        )


def facts(r: Region, s: Scene) -> str:
    """The measurements a reader needs to check a note by eye."""
    w, h = s.width, s.height
    return (
        f"centroid ({r.cx / w:.2f}W, {r.cy / h:.2f}H), box x {r.x0 / w:.2f}-{r.x1 / w:.2f}W "
        f"y {r.y0 / h:.2f}-{r.y1 / h:.2f}H, {len(s.candidates(r))} {r.label} candidate(s)"
    )


def decide(draft: Draft, r: Region, s: Scene) -> Item | None:
    """The draft's truth for target ``r``; None when any claim is too close to call."""
    values = [rule(r, s) for rule, _ in draft.rules]
    if any(v is None for v in values):
        return None
    if all(values):
        for other in s.others(r):
            seen = [rule(other, s) for rule, _ in draft.rules]
            if any(v is None for v in seen):
                return None
            if all(seen):
                what = "; ".join(n for _, n in draft.rules) or "label only"
                note = f"ambiguous: true ({what}) but also of {other.rid}"
                return Item(r.rid, draft.text, False, "ambiguous", draft.negated, note)
        what = "; ".join(n for _, n in draft.rules) or "label and anchors only"
        return Item(r.rid, draft.text, True, draft.claim_type, draft.negated, f"true: {what}")
    failed = "; ".join(n for (_, n), v in zip(draft.rules, values, strict=True) if not v)
    note = f"false: {failed} ({facts(r, s)})"
    return Item(r.rid, draft.text, False, draft.claim_type, draft.negated, note)


# ---- claim families ---------------------------------------------------------------------------
class Writer:
    """Drafts for one target: every family, each with paraphrases drawn from a seeded generator."""

    def __init__(self, r: Region, s: Scene, seed: int):
        self.r, self.s = r, s
        self.rng = random.Random(f"{seed}/{r.rid}")
        self.n = len(s.candidates(r))

    # words
    def term(self) -> str:
        terms = TERMS[self.r.label]
        if self.s.source != "kvasir_seg":
            terms = [t for t in terms if t != "lesion"]
        return self.rng.choice(terms)

    def plural(self) -> str:
        return self.rng.choice(PLURALS[self.r.label])

    def anchor(self) -> str:
        where = self.rng.choice(ANCHORS[self.s.wording])
        return (
            f"{self.rng.choice(['seen', 'visible', 'shown'])} {where}"
            if self.rng.random() < 0.3
            else where
        )

    def place(self) -> str:
        """An anchor without a participle (for forms that have their own)."""
        return self.rng.choice(ANCHORS[self.s.wording])

    def pic(self) -> str:
        return self.rng.choice(PICTURE[self.s.kind])

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def style(self, text: str) -> str:
        """As people write: sometimes capitalised, sometimes with a full stop."""
        if self.rng.random() < 0.25:
            text = text[0].upper() + text[1:]
        if self.rng.random() < 0.1:
            text += "."
        return text

    def draft(self, text: str, kind: str, rules: list[tuple[Rule, str]], neg: bool = False):
        return Draft(self.style(" ".join(text.split())), kind, rules, neg)

    # families
    def plain(self) -> Iterator[Draft]:
        for form in self.rng.sample(
            [
                "the {L} {A}",
                "the {L} visible {P}",
                "the {L} shown {P}",
                "the {L} that can be seen {P}",
                "the {L}",
                "{a} {L} {A}",
            ],
            3,
        ):
            term = self.term()
            text = form.format(L=term, A=self.anchor(), P=self.place(), a=article(term))
            yield self.draft(text, "plain", [])

    HALF = {
        "left": [
            "on the left side of the {P}",
            "in the left half of the {P}",
            "on the left of the {P}",
            "in the left part of the {P}",
        ],
        "right": [
            "on the right side of the {P}",
            "in the right half of the {P}",
            "on the right of the {P}",
            "in the right part of the {P}",
        ],
        "upper": [
            "in the upper half of the {P}",
            "in the upper part of the {P}",
            "higher up in the {P}",
            "in the top part of the {P}",
            "in the top half of the {P}",
        ],
        "lower": [
            "in the lower half of the {P}",
            "in the lower part of the {P}",
            "further down in the {P}",
            "in the bottom part of the {P}",
            "in the bottom half of the {P}",
            "lower down in the {P}",
        ],
    }

    def half_phrase(self, side: str) -> str:
        return self.pick(self.HALF[side]).format(P=self.pic())

    def halves(self) -> Iterator[Draft]:
        for side in self.HALF:
            form = self.pick(
                ["the {L} {H}", "the {L} located {H}", "the {L} seen {H}", "the {L} lying {H}"]
            )
            text = form.format(L=self.term(), H=self.half_phrase(side))
            yield self.draft(text, "half", [(T.half(side), f"P1 {side} half")])
        # negations: "not X" holds only when the opposite half does
        for side in self.rng.sample(list(self.HALF), 2):
            opposite = T.OPPOSITE[side]
            rule = [(T.half(opposite), f"not {side} = P1 {opposite} half")]
            p = self.pic()
            forms = [
                f"the {{L}} that is not on the {side} side of the {p}",
                f"the {{L}} not located in the {side} half of the {p}",
                f"the {{L}} in any part of the {p} except the {side} half",
                f"the {{L}} on the {opposite} rather than the {side} side of the {p}",
                f"the {{L}}, not in the {side} part of the {p}",
                f"the {{L}} lying in the {opposite} half and not the {side} half of the {p}",
            ]
            if side in ("upper", "lower"):
                forms = [f.replace(" side of", " part of") for f in forms]
            text = self.pick(forms).format(L=self.term())
            yield self.draft(text, "half", rule, True)
        # neither ... nor: two negations, each checked against its opposite
        level, side = self.pick(["upper", "lower"]), self.pick(["left", "right"])
        text = (
            f"the {self.term()} that is neither in the {level} half nor in the {side} half "
            f"of the {self.pic()}"
        )
        rules = [
            (T.half(T.OPPOSITE[level]), f"not {level} = P1 {T.OPPOSITE[level]} half"),
            (T.half(T.OPPOSITE[side]), f"not {side} = P1 {T.OPPOSITE[side]} half"),
        ]
        yield self.draft(text, "half", rules, True)
        # "neither upper nor lower half": no place satisfies both negations
        text = (
            f"the {self.term()} that lies neither in the upper nor in the lower half of the "
            f"{self.pic()}"
        )
        rules = [
            (T.half("lower"), "not upper = P1 lower half"),
            (T.half("upper"), "not lower = P1 upper half"),
        ]
        yield self.draft(text, "half", rules, True)

    def quadrants(self) -> Iterator[Draft]:
        for level in ("upper", "lower"):
            for side in ("left", "right"):
                top = {
                    "upper": self.pick(["upper", "top"]),
                    "lower": self.pick(["lower", "bottom"]),
                }
                v = top[level]
                form = self.pick(
                    [
                        f"in the {v} {side} quadrant of the {{P}}",
                        f"in the {v} {side} of the {{P}}",
                        f"in the {v}-{side} part of the {{P}}",
                        f"in the {v} {side} region of the {{P}}",
                    ]
                )
                text = f"the {self.term()} {form.format(P=self.pic())}"
                yield self.draft(
                    text, "quadrant", [(T.quadrant(level, side), f"P2 {level} {side}")]
                )

    def corners(self) -> Iterator[Draft]:
        for level in ("upper", "lower"):
            for side in ("left", "right"):
                v = self.pick({"upper": ["upper", "top"], "lower": ["lower", "bottom"]}[level])
                form = self.pick(
                    [
                        "the {L} in the {v} {s} corner of the {P}",
                        "the {L} tucked into the {v} {s} corner of the {P}",
                        "the {L} near the {v} {s} corner of the {P}",
                        "the {L} sitting in the {v}-{s} corner of the {P}",
                    ]
                )
                text = form.format(L=self.term(), v=v, s=side, P=self.pic())
                yield self.draft(
                    text, "corner", [(T.corner(level, side), f"P3 {level} {side} corner")]
                )

    def centre(self) -> Iterator[Draft]:
        for _ in range(2):
            form = self.pick(
                [
                    "the {L} in the centre of the {P}",
                    "the {L} in the center of the {P}",
                    "the {L} centrally located in the {P}",
                    "the {L} in the middle of the {P}",
                    "the {L} positioned centrally in the {P}",
                    "the central {L} {A}",
                ]
            )
            text = form.format(L=self.term(), P=self.pic(), A=self.anchor())
            yield self.draft(text, "centre", [(T.central, "P4 centre")])
        form = self.pick(
            [
                "the {L} that is not in the centre of the {P}",
                "the {L} not located in the middle of the {P}",
                "the {L}, not in the center of the {P}",
            ]
        )
        text = form.format(L=self.term(), P=self.pic())
        yield self.draft(text, "centre", [(self._not_central, "not centre = P5 periphery")], True)

    @staticmethod
    def _not_central(r: Region, s: Scene) -> T.Tri:
        """Not central: holds at the periphery, fails in the centre, unclear in between."""
        if T.central(r, s):
            return False
        return True if T.periphery(r, s) else None

    EDGE_WORDS = {
        "left": ["left"],
        "right": ["right"],
        "top": ["top", "upper"],
        "bottom": ["bottom", "lower"],
    }

    def edges(self) -> Iterator[Draft]:
        for edge in self.EDGE_WORDS:
            word = self.pick(self.EDGE_WORDS[edge])
            form = self.pick(
                [
                    "the {L} near the {e} edge of the {P}",
                    "the {L} at the {e} border of the {P}",
                    "the {L} along the {e} edge of the {P}",
                    "the {L} close to the {e} margin of the {P}",
                ]
            )
            text = form.format(L=self.term(), e=word, P=self.pic())
            yield self.draft(text, "edge", [(T.near_edge(edge), f"P5 near the {edge} edge")])
        form = self.pick(
            [
                "the {L} at the periphery of the {P}",
                "the {L} near the border of the {P}",
                "the {L} at the edge of the {P}",
                "the {L} at the margin of the {P}",
                "the {L} peripherally located in the {P}",
                "the {L} near the edge of the {P}",
            ]
        )
        text = form.format(L=self.term(), P=self.pic())
        yield self.draft(text, "edge", [(T.periphery, "P5 periphery (some edge)")])
        form = self.pick(
            [
                "the {L} away from the edges of the {P}",
                "the {L} not near any edge of the {P}",
                "the {L} away from the borders of the {P}",
            ]
        )
        text = form.format(L=self.term(), P=self.pic())
        yield self.draft(text, "edge", [(T.central, "away from the edges = P4 centre")], True)

    def clock_face(self) -> Iterator[Draft]:
        if self.s.kind != "endoscopy":
            hour = self.rng.randint(1, 12)
            text = f"the {self.term()} at the {NUMBERS[hour]} o'clock position {self.anchor()}"
            yield self.draft(text, "clock", [(T.never, "P6 clock face: endoscopy only")])
            return
        actual = T.clock_hour(self.r, self.s)
        nearest = round(actual) % 12 or 12
        hours = {nearest, (nearest + 6 - 1) % 12 + 1, (nearest + 3 - 1) % 12 + 1}
        for hour in sorted(hours):
            form = self.pick(
                [
                    "the {L} at the {h} o'clock position",
                    "the {L} at {h} o'clock {A}",
                    "the {L} located at about {h} o'clock in the endoscopic view",
                    "the {L} seen at {h} o'clock",
                ]
            )
            text = form.format(L=self.term(), h=NUMBERS[hour], A=self.anchor())
            yield self.draft(text, "clock", [(T.clock(hour), f"P6 at {NUMBERS[hour]} o'clock")])

    DIRECTIONS = {
        "left": [
            "to the left of the other {L} in the {P}",
            "left of the other {L} in the {P}",
            "lying to the left of the other {L} in the {P}",
        ],
        "right": [
            "to the right of the other {L} in the {P}",
            "right of the other {L} in the {P}",
            "lying to the right of the other {L} in the {P}",
        ],
        "up": [
            "above the other {L}",
            "positioned higher than the other {L}",
            "higher up than the other {L} in the {P}",
            "located above the other one",
        ],
        "down": [
            "below the other {L}",
            "positioned lower than the other {L}",
            "further down than the other {L} in the {P}",
            "located below the other one",
        ],
    }

    def relations(self) -> Iterator[Draft]:
        if self.r.label == "edema":
            return
        for direction, forms in self.DIRECTIONS.items():
            if self.s.kind == "mri" and direction in ("left", "right"):
                continue  # whose left, on a brain slice, is itself a question (see patient_side)
            phrase = self.pick(forms).format(L=self.term(), P=self.pic())
            rules = [(self._beyond_the_other(direction), f"S1 {RELATIVE[direction]} the other")]
            yield self.draft(f"the {self.term()} {phrase}", "relation", rules)
        if self.n == 2:  # "to the right of the smaller polyp": a relation and a size claim
            direction = self.pick(["left", "right"] if self.s.kind != "mri" else ["up", "down"])
            size = self.pick(["smaller", "larger"])
            where = {
                "left": "to the left of",
                "right": "to the right of",
                "up": "above",
                "down": "below",
            }[direction]
            anchor = f" in the {self.pic()}" if direction in ("left", "right") else ""
            text = f"the {self.term()} {where} the {size} {self.term()}{anchor}"
            own = T.largest if size == "smaller" else T.smallest
            rules = [
                (self._beyond_the_other(direction), f"S1 {RELATIVE[direction]} the other"),
                (own, f"the other is the {size}: S3"),
            ]
            yield self.draft(text, "relation", rules)
        # relations to another label's single target (BraTS): above / below it
        if self.s.kind == "mri":
            for other_label in sorted({o.label for o in self.s.regions} - {self.r.label}):
                others = [o for o in self.s.regions if o.label == other_label]
                if len(others) != 1 or self.s.fragments[other_label]:
                    continue
                direction = self.pick(["up", "down"])
                word = {"up": "above", "down": "below"}[direction]
                other_term = self.rng.choice(TERMS[other_label])
                rule = self._beyond_label(other_label, direction)
                text = f"the {self.term()} {word} the {other_term} {self.anchor()}"
                yield self.draft(text, "relation", [(rule, f"S1 {word} the {other_label}")])

    @staticmethod
    def _beyond_the_other(direction: str) -> Rule:
        """'the other X' names one target only when there are exactly two candidates."""

        def rule(r: Region, s: Scene) -> T.Tri:
            others = s.others(r)
            return T.beyond(r, others[0], s, direction) if len(others) == 1 else False

        return rule

    @staticmethod
    def _beyond_label(label: str, direction: str) -> Rule:
        def rule(r: Region, s: Scene) -> T.Tri:
            (other,) = [o for o in s.regions if o.label == label]
            return T.beyond(r, other, s, direction)

        return rule

    EXTREMAL = {
        "left": [
            "the leftmost {L} in the {P}",
            "the {L} farthest to the left in the {P}",
            "the {L} furthest left in the {P}",
        ],
        "right": [
            "the rightmost {L} in the {P}",
            "the {L} farthest to the right in the {P}",
            "the {L} furthest right in the {P}",
        ],
        "up": [
            "the uppermost {L}",
            "the highest {L} in the {P}",
            "the topmost {L} {A}",
            "the {L} highest up in the {P}",
        ],
        "down": [
            "the lowest {L} in the {P}",
            "the lowermost {L}",
            "the bottommost {L} {A}",
            "the {L} lowest down in the {P}",
        ],
    }
    OF_TWO = {
        "left": "the left one of the two {Ls} in the {P}",
        "right": "the right one of the two {Ls} in the {P}",
        "up": "the higher of the two {Ls}",
        "down": "the lower of the two {Ls}",
    }

    def extremal(self) -> Iterator[Draft]:
        if self.r.label == "edema":
            return
        for direction, forms in self.EXTREMAL.items():
            if self.s.kind == "mri" and direction in ("left", "right"):
                continue
            text = self.pick(forms).format(L=self.term(), P=self.pic(), A=self.anchor())
            yield self.draft(text, "extremal", [(T.extremal(direction), f"S2 {MOST[direction]}")])
        direction = self.pick(["up", "down"] if self.s.kind == "mri" else list(self.OF_TWO))
        text = self.OF_TWO[direction].format(Ls=self.plural(), P=self.pic())
        rules = [
            (T.extremal(direction), f"S2 {MOST[direction]}"),
            (T.count(lambda n: n == 2), "S6 two candidates"),
        ]
        yield self.draft(text, "extremal", rules)
        if self.n == 2:  # "not the leftmost" of two holds when it is the other extreme
            direction = self.pick(["up", "down"] if self.s.kind == "mri" else list(self.OF_TWO))
            word = {"left": "leftmost", "right": "rightmost", "up": "uppermost", "down": "lowest"}
            mirror = {"left": "right", "right": "left", "up": "down", "down": "up"}[direction]
            anchor = f" in the {self.pic()}" if direction in ("left", "right") else ""
            form = self.pick(
                [
                    "the {L} that is not the {w} one{a}",
                    "the {L} other than the {w} one{a}",
                    "the {L} rather than the {w} one{a}",
                ]
            )
            text = form.format(L=self.term(), w=word[direction], a=anchor)
            rule = [(T.extremal(mirror), f"not {MOST[direction]} of two = S2 {MOST[mirror]}")]
            yield self.draft(text, "extremal", rule, True)

    def sizes(self) -> Iterator[Draft]:
        if self.n < 2:
            return
        for kind in ("largest", "smallest"):
            rule = T.largest if kind == "largest" else T.smallest
            if self.n == 2:
                word = "larger" if kind == "largest" else "smaller"
                big = "bigger" if kind == "largest" else "smaller"
                forms = [
                    f"the {word} of the two {{Ls}}",
                    f"the {word} {{L}} {{A}}",
                    f"the {big} {{L}}",
                    f"the {kind} {{L}} {{A}}",
                ]
            else:
                big = "biggest" if kind == "largest" else "smallest"
                forms = [
                    f"the {kind} {{L}} {{A}}",
                    f"the {big} of the {{Ls}}",
                    f"the {kind} of the {NUMBERS[self.n]} {{Ls}}",
                ]
            text = self.pick(forms).format(L=self.term(), Ls=self.plural(), A=self.anchor())
            yield self.draft(text, "size_compare", [(rule, f"S3 {kind}")])
        if self.n == 2:
            form = self.pick(
                [
                    "the {L} other than the larger one",
                    "the {L} that is not the larger of the two",
                    "the {L} rather than the bigger one {A}",
                    "the {L} that is not the smaller one",
                ]
            )
            text = form.format(L=self.term(), A=self.anchor())
            if "smaller" in form:
                rules = [(T.largest, "not the smaller of two = S3 largest")]
            else:
                rules = [(T.smallest, "not the larger of two = S3 smallest")]
            yield self.draft(text, "size_compare", rules, True)
        if self.n >= 3:
            for rank, word in ((2, "largest"), (2, "smallest")):
                form = self.pick(
                    [
                        "the second {w} {L} {A}",
                        "the second-{w} {L}",
                        f"the second {{w}} of the {NUMBERS[self.n]} {{Ls}}",
                    ]
                )
                text = form.format(w=word, L=self.term(), Ls=self.plural(), A=self.anchor())
                rule = T.size_rank(rank, word == "largest")
                yield self.draft(text, "size_compare", [(rule, f"S3 second {word}")])
            if self.n == 3:
                text = (
                    f"the {self.term()} that is neither the largest nor the smallest, "
                    f"{self.place()}"
                )
                rule = T.size_rank(2, True)
                yield self.draft(
                    text,
                    "size_compare",
                    [(rule, "neither largest nor smallest = S3 second largest")],
                    True,
                )

    def nearer(self) -> Iterator[Draft]:
        if self.n < 2:
            return
        form = self.pick(
            [
                "the {L} nearer the centre of the {P}",
                "the {L} closer to the center of the {P}",
                "the more central of the {Ls}",
                "the {L} closest to the middle of the {P}",
            ]
        )
        text = form.format(L=self.term(), Ls=self.plural(), P=self.pic())
        yield self.draft(text, "nearer_centre", [(T.nearer_centre, "S4 nearer the centre")])
        form = self.pick(
            [
                "the more peripheral {L} {A}",
                "the {L} nearer the edge of the {P}",
                "the {L} farther from the centre of the {P}",
            ]
        )
        text = form.format(L=self.term(), P=self.pic(), A=self.anchor())
        yield self.draft(text, "nearer_centre", [(T.nearer_edge, "S4 nearer the edge")])

    def adjacency(self) -> Iterator[Draft]:
        verbs = ["next to", "touching", "bordering", "adjacent to", "abutting"]
        if self.n == 2 and self.r.label == "polyp":
            text = f"the {self.term()} {self.pick(verbs)} the other {self.term()}"
            yield self.draft(text, "adjacency", [(self._touching_other, "S5 next to the other")])
        if self.s.kind != "mri":
            return
        for other_label in sorted({o.label for o in self.s.regions} - {self.r.label}):
            if len([o for o in self.s.regions if o.label == other_label]) != 1:
                continue
            text = f"the {self.term()} {self.pick(verbs)} the {self.rng.choice(TERMS[other_label])}"
            rule = self._touching_label(other_label)
            yield self.draft(text, "adjacency", [(rule, f"S5 next to the {other_label}")])

    @staticmethod
    def _touching_other(r: Region, s: Scene) -> T.Tri:
        others = s.others(r)
        return T.adjacent(r, others[0]) if len(others) == 1 else False

    @staticmethod
    def _touching_label(label: str) -> Rule:
        def rule(r: Region, s: Scene) -> T.Tri:
            (other,) = [o for o in s.regions if o.label == label]
            return T.adjacent(r, other)

        return rule

    def counts(self) -> Iterator[Draft]:
        only = T.count(lambda n: n == 1)
        for _ in range(2):
            form = self.pick(
                [
                    "the only {L} {A}",
                    "the lone {L} {A}",
                    "a single {L} {A}",
                    "the solitary {L} {A}",
                    "the sole {L} {A}",
                    "the {L}, the only one {A}",
                ]
            )
            text = form.format(L=self.term(), A=self.anchor())
            yield self.draft(text, "count", [(only, "S6 the only candidate")])
        form = self.pick(
            [
                "the {L}, with no other {L2} {A}",
                "the {L} without any other {L2} {A}",
                "the {L}, no other {L2} being visible {P}",
            ]
        )
        text = form.format(L=self.term(), L2=self.term(), A=self.anchor(), P=self.place())
        yield self.draft(text, "count", [(only, "no other = S6 the only candidate")], True)
        plural_claims = [
            ("one of two {Ls}", lambda n: n == 2, "S6 two candidates"),
            ("one of the two {Ls}", lambda n: n == 2, "S6 two candidates"),
            ("one of three {Ls}", lambda n: n == 3, "S6 three candidates"),
            ("one of several {Ls}", lambda n: n >= 3, "S6 several (3+) candidates"),
            ("one of multiple {Ls}", lambda n: n >= 2, "S6 multiple (2+) candidates"),
            ("one of the {Ls}", lambda n: n >= 2, "S6 plural: 2+ candidates"),
            ("one of many {Ls}", lambda n: n >= 2, "S6 many: 2+ candidates"),
        ]
        lead = self._disambiguator()
        for phrase, test, note in self.rng.sample(plural_claims, 3):
            claim = phrase.format(Ls=self.plural())
            rules = [(T.count(test), note)]
            if lead is None:
                text = f"{claim} {self.anchor()}"
            else:
                text = f"{lead[0]}, {claim} {self.anchor()}"
                rules.append(lead[1])
            yield self.draft(text, "count", rules)
        if lead is not None:  # "not the only one": holds with 2+ candidates
            text = f"{lead[0]}, not the only {self.term()} {self.anchor()}"
            yield self.draft(
                text, "count", [(T.count(lambda n: n >= 2), "not the only = S6 2+"), lead[1]], True
            )

    def _disambiguator(self) -> tuple[str, tuple[Rule, str]] | None:
        """A true phrase that singles the target out among 2+ candidates, to carry a count."""
        if self.n < 2:
            return None
        options = [
            (f"the largest {self.term()}", (T.largest, "S3 largest")),
            (f"the smallest {self.term()}", (T.smallest, "S3 smallest")),
            (f"the uppermost {self.term()}", (T.extremal("up"), "S2 uppermost")),
            (f"the lowest {self.term()}", (T.extremal("down"), "S2 lowest")),
        ]
        if self.s.kind != "mri":
            options += [
                (
                    f"the leftmost {self.term()} in the {self.pic()}",
                    (T.extremal("left"), "S2 leftmost"),
                ),
                (
                    f"the rightmost {self.term()} in the {self.pic()}",
                    (T.extremal("right"), "S2 rightmost"),
                ),
            ]
        good = [o for o in options if o[1][0](self.r, self.s) is True]
        return self.rng.choice(good) if good else None

    SIDES_3D = [
        "in the {s} cerebral hemisphere",
        "in the {s} hemisphere",
        "in the {s} half of the brain",
        "on the {s} side of the brain",
        "in the patient's {s} hemisphere",
        "on the patient's {s}",
        "on the patient's {s} side",
    ]

    def patient_sides(self) -> Iterator[Draft]:
        if self.s.kind != "mri":
            yield from self._sides_2d()
            return
        for side in ("left", "right"):
            if self.rng.random() < 0.5:
                text = f"the {side}-sided {self.term()} {self.anchor()}"
            else:
                text = (
                    f"the {self.term()} {self.pick(self.SIDES_3D).format(s=side)} {self.anchor()}"
                )
            yield self.draft(text, "patient_side", [(T.patient_side(side), f"A1 patient's {side}")])
        # the mirror trap: patient side and image side in one query
        side = self.pick(["left", "right"])
        image_side = T.OPPOSITE[side]
        text = (
            f"the {self.term()} in the {side} hemisphere, on the {image_side} side of the "
            f"{self.pic()}"
        )
        rules = [
            (T.patient_side(side), f"A1 patient's {side}"),
            (T.half(image_side), f"P1 {image_side} half of the image"),
        ]
        yield self.draft(text, "patient_side", rules)
        side = self.pick(["left", "right"])
        other = T.OPPOSITE[side]
        form = self.pick(
            [
                "the {L} that is not in the {s} hemisphere {A}",
                "the {L} in the {o} rather than the {s} hemisphere",
                "the {L}, not on the patient's {s} side {A}",
            ]
        )
        text = form.format(L=self.term(), s=side, o=other, A=self.anchor())
        yield self.draft(
            text,
            "patient_side",
            [(T.patient_side(other), f"not {side} = A1 patient's {other}")],
            True,
        )

    def _sides_2d(self) -> Iterator[Draft]:
        side = self.pick(["left", "right"])
        forms = [
            f"the {side}-sided {{L}} {{A}}",
            f"the {{L}} on the patient's {side} {{A}}",
            f"the {{L}} on the {side} side of the patient",
            f"the {{L}} in the {side} half of the body",
        ]
        if self.s.kind == "endoscopy":
            forms += [f"the {{L}} in the {side} colon", f"the {{L}} in the {side} hemicolon"]
        text = self.pick(forms).format(L=self.term(), A=self.anchor())
        yield self.draft(text, "unverifiable", [(T.never, "A1 patient side on a 2D image")])

    def directions(self) -> Iterator[Draft]:
        if self.s.kind != "mri":
            form = self.pick(
                [
                    "the anterior {L} {A}",
                    "the {L} on the posterior wall {A}",
                    "the {L} located anteriorly {A}",
                    "the {L} in the superior part of the {P}",
                ]
            )
            text = form.format(L=self.term(), A=self.anchor(), P=self.pic())
            yield self.draft(text, "unverifiable", [(T.never, "A2 direction on a 2D image")])
            return
        for word, side in (("anterior", "upper"), ("posterior", "lower")):
            form = self.pick(
                [
                    f"the {{L}} in the {word} part of the brain {{A}}",
                    f"the {{L}} located {word}ly {{A}}",
                    f"the {word} {{L}} {{A}}",
                    f"the {{L}} in the {word} half of the brain",
                ]
            )
            text = form.format(L=self.term(), A=self.anchor())
            yield self.draft(text, "direction", [(T.half(side), f"A2 {word} = P1 {side} half")])
        word = self.pick(["superior", "inferior", "cranial", "caudal"])
        text = f"the {self.term()} in the {word} part of the brain {self.anchor()}"
        yield self.draft(
            text, "direction", [(T.never, f"A2 {word} is through-plane on an axial slice")]
        )
        word, other = self.pick([("anterior", "lower"), ("posterior", "upper")])
        text = f"the {self.term()} that is not in the {word} half of the brain {self.anchor()}"
        yield self.draft(
            text, "direction", [(T.half(other), f"not {word} = P1 {other} half")], True
        )

    def lobes(self) -> Iterator[Draft]:
        if self.s.kind != "mri":
            return
        for name in ("frontal", "occipital"):
            form = self.pick(
                [
                    f"the {{L}} in the {name} lobe {{A}}",
                    f"the {{L}} in the {name} region {{A}}",
                    f"the {name} {{L}} {{A}}",
                ]
            )
            text = form.format(L=self.term(), A=self.anchor())
            yield self.draft(text, "lobe", [(T.lobe(name), f"A3 {name}")])
        side = self.pick(["left", "right"])
        name = self.pick(["frontal", "occipital"])
        text = f"the {self.term()} in the {side} {name} lobe {self.anchor()}"
        rules = [(T.patient_side(side), f"A1 patient's {side}"), (T.lobe(name), f"A3 {name}")]
        yield self.draft(text, "lobe", rules)
        name = self.pick(
            [
                "temporal lobe",
                "parietal lobe",
                "parietal region",
                "insular cortex",
                "cerebellum",
                "basal ganglia",
                "thalamus",
            ]
        )
        text = f"the {self.term()} in the {name} {self.anchor()}"
        yield self.draft(text, "lobe", [(T.never, f"A3 {name}: no atlas")])

    ORGANS_TRUE = {
        "endoscopy": [
            "in the colon",
            "in the large bowel",
            "on the colonic wall",
            "in the large intestine",
        ],
        "ultrasound": [],
        "mri": ["in the brain", "within the brain", "in the brain parenchyma"],
    }
    ORGANS_FALSE = {
        "endoscopy": [
            "in the gallbladder",
            "in the stomach",
            "in the thorax",
            "in the liver",
            "in the urinary bladder",
            "in the esophagus",
            "in the duodenum",
            "next to the spinal cord",
            "in the small intestine",
        ],
        "ultrasound": [
            "in the fetal abdomen",
            "in the fetal thorax",
            "next to the fetal spine",
            "in the maternal liver",
            "in the kidney",
            "in the spinal cord",
        ],
        "mri": [
            "in the spinal cord",
            "in the liver",
            "in the lung",
            "in the kidney",
            "in the thorax",
            "in the pancreas",
            "in the abdomen",
        ],
    }

    def organs(self) -> Iterator[Draft]:
        if self.ORGANS_TRUE[self.s.kind]:
            place = self.pick(self.ORGANS_TRUE[self.s.kind])
            yield self.draft(f"the {self.term()} {place} {self.anchor()}", "organ", [])
        for place in self.rng.sample(self.ORGANS_FALSE[self.s.kind], 2):
            text = f"the {self.term()} {place} {self.anchor()}"
            yield self.draft(text, "organ", [(T.never, f"wrong organ: {place}")])

    MODALITY_TRUE = {
        "endoscopy": [
            "on this colonoscopy image",
            "in the endoscopic view",
            "seen at colonoscopy",
            "on this endoscopy image",
        ],
        "ultrasound": [
            "on this ultrasound scan",
            "on the sonogram",
            "on this obstetric ultrasound",
            "in the sonographic image",
        ],
        "mri_flair": [
            "on this FLAIR image",
            "on the axial FLAIR MRI",
            "on this MR slice",
            "on the fluid-attenuated inversion recovery image",
        ],
        "mri_t1c": [
            "on this post-contrast T1 image",
            "on the gadolinium-enhanced T1-weighted slice",
            "on this MR slice",
            "on the contrast-enhanced T1 image",
        ],
    }
    MODALITY_FALSE = {
        "endoscopy": [
            "on this mammogram",
            "in this dermoscopy image",
            "on this histology slide",
            "on the CT scan",
            "in this MRI",
            "on this chest X-ray",
            "in this ultrasound image",
            "on the fundus photograph",
            "on the PET scan",
            "on the OCT image",
        ],
        "ultrasound": [
            "on this MRI",
            "on the fetal MRI",
            "on the CT scan",
            "on this radiograph",
            "on the X-ray",
            "in the endoscopic image",
            "on the mammogram",
            "on the histology slide",
        ],
        "mri_flair": [
            "on this post-contrast image",
            "on the gadolinium-enhanced slice",
            "on this diffusion-weighted image",
            "on the CT slice",
            "on the ADC map",
            "on the PET image",
            "on this contrast-enhanced MRI slice",
            "on the ultrasound image",
            "on the susceptibility-weighted image",
            "on this T1-weighted image",
        ],
        "mri_t1c": [
            "on this FLAIR image",
            "on the fluid-attenuated inversion recovery slice",
            "on this diffusion-weighted image",
            "on the CT slice",
            "on the ADC map",
            "on the PET image",
            "on this T2-weighted image",
            "on the ultrasound image",
            "on the susceptibility-weighted image",
            "on this FLAIR-weighted MRI slice",
        ],
    }

    def modalities(self) -> Iterator[Draft]:
        yield self.draft(
            f"the {self.term()} {self.pick(self.MODALITY_TRUE[self.s.wording])}", "modality", []
        )
        for where in self.rng.sample(self.MODALITY_FALSE[self.s.wording], 2):
            yield self.draft(
                f"the {self.term()} {where}", "modality", [(T.never, f"wrong modality: {where}")]
            )

    SIZE_WORDS = [
        "small",
        "diminutive",
        "large",
        "tiny",
        "big",
        "sizeable",
        "medium-sized",
        "huge",
        "very large",
        "subcentimetre",
    ]

    def sizes_bare(self) -> Iterator[Draft]:
        why = {
            "endoscopy": "Z3 no pixel spacing: a bare size word is unverifiable",
            "ultrasound": "Z1 fetal head: a biometric measure, no size adjective",
            "mri": "Z1 no size classes for this label",
        }[self.s.kind]
        for word in self.rng.sample(self.SIZE_WORDS, 2):
            form = self.pick(["the {w} {L} {A}", "{a} {w} {L} {A}", "the {L}, which is {w}"])
            text = form.format(w=word, L=self.term(), A=self.anchor(), a=article(word))
            yield self.draft(text, "size_bare", [(T.never, f"'{word}': {why}")])

    SHARE = [
        (
            ">=",
            0.40,
            ["filling most of the {P}", "occupying most of the {P}", "taking up most of the {P}"],
        ),
        (
            ">=",
            0.20,
            [
                "taking up a large part of the {P}",
                "covering a large part of the {P}",
                "occupying a large portion of the {P}",
            ],
        ),
        (
            "<=",
            0.05,
            [
                "occupying a small part of the {P}",
                "taking up only a small portion of the {P}",
                "covering a small part of the {P}",
            ],
        ),
    ]

    def sizes_image(self) -> Iterator[Draft]:
        for op, share, forms in self.SHARE:
            phrase = self.pick(forms).format(P=self.pic())
            text = f"the {self.term()} {phrase}"
            rule = T.image_share(op, share)
            yield self.draft(text, "size_image", [(rule, f"Z2 area {op} {share:.0%} of the image")])

    SHAPES = {
        "round": ["round", "circular", "spherical", "rounded"],
        "oval": ["oval", "ovoid", "elliptical", "oval-shaped"],
        "elongated": ["elongated", "long and thin", "elongate"],
        "irregular": ["irregularly shaped", "irregular"],
        "crescent": ["crescent-shaped", "crescentic"],
    }

    def shapes(self) -> Iterator[Draft]:
        if self.r.area < SHAPE_MIN_AREA:
            return
        for name, words in self.SHAPES.items():
            word = self.pick(words)
            text = self.pick(
                [f"the {word} {{L}} {{A}}", f"the {{L}} with {article(word)} {word} shape"]
            )
            if "shape" in text and word.endswith(("shaped", "ic", "thin")):
                text = f"the {word} {{L}} {{A}}"
            text = text.format(L=self.term(), A=self.anchor())
            yield self.draft(text, "shape", [(T.shape(name), f"shape {name} (suite margins)")])

    JUDGE_WORDS = {
        "endoscopy": [
            "pedunculated",
            "sessile",
            "reddish",
            "ulcerated",
            "flat",
            "lobulated",
            "smooth-surfaced",
            "hyperemic",
        ],
        "ultrasound": ["hypoechoic", "echogenic", "hyperechoic", "well-ossified", "bright"],
        "mri": ["hyperintense", "hypointense", "bright", "heterogeneous", "FLAIR-hyperintense"],
    }

    def judge_words(self) -> Iterator[Draft]:
        for word in self.rng.sample(self.JUDGE_WORDS[self.s.kind], 2):
            text = f"the {word} {self.term()} {self.anchor()}"
            yield self.draft(
                text, "needs_judge", [(T.never, f"'{word}': appearance, needs a judge")]
            )

    def unanchored(self) -> Iterator[Draft]:
        side = self.pick(["left", "right"])
        form = self.pick(["the {L} on the {s}", "the {L} on the {s} side", "the {s}most {L}"])
        text = form.format(L=self.term(), s=side)
        yield self.draft(
            text, "unanchored_side", [(T.never, f"'{side}' does not say image or patient")]
        )

    FAMILIES = (
        "plain",
        "halves",
        "quadrants",
        "corners",
        "centre",
        "edges",
        "clock_face",
        "relations",
        "extremal",
        "sizes",
        "nearer",
        "adjacency",
        "counts",
        "patient_sides",
        "directions",
        "lobes",
        "organs",
        "modalities",
        "sizes_bare",
        "sizes_image",
        "shapes",
        "judge_words",
        "unanchored",
    )

    def drafts(self) -> Iterator[Draft]:
        for family in self.FAMILIES:
            yield from getattr(self, family)()


# ---- the suite --------------------------------------------------------------------------------
def suite(scenes: list[Scene], seed: int) -> list[Item]:
    """Every decidable draft of every usable target, then at most CAP_PER_GROUP per (source,
    claim type, truth), chosen with a seeded generator and kept in generation order."""
    items: list[tuple[str, Item]] = []
    seen: set[tuple[str, str]] = set()
    for scene in scenes:
        for region in scene.regions:
            for draft in Writer(region, scene, seed).drafts():
                item = decide(draft, region, scene)
                key = (region.rid, draft.text.lower().rstrip("."))
                if item is not None and key not in seen:
                    seen.add(key)
                    items.append((scene.source, item))
    groups: dict[tuple, list[int]] = {}
    for i, (source, item) in enumerate(items):
        groups.setdefault((source, item.claim_type, item.truth), []).append(i)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        chosen.update(
            members if len(members) <= CAP_PER_GROUP else rng.sample(members, CAP_PER_GROUP)
        )
    return [item for i, (_, item) in enumerate(items) if i in chosen]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--built", type=Path, default=None, help="folder holding the three builds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medground-suite-") as tmp:
        built = (
            {folder: args.built / folder for folder in SAMPLES}
            if args.built
            else build_samples(args.data, Path(tmp))
        )
        scenes, skipped = T.load_scenes(args.data, built)
    for why in skipped:
        print(f"left out {why}", file=sys.stderr)
    items = suite(scenes, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(item.line() + "\n" for item in items), encoding="utf-8")
    table = Counter((i.claim_type, i.truth) for i in items)
    print(f"wrote {len(items)} queries to {args.out}")
    for kind in sorted({k for k, _ in table}):
        print(f"  {kind:<16} true {table[(kind, True)]:>4}  false {table[(kind, False)]:>4}")
    print(f"  negated: {sum(i.negated for i in items)}; true {sum(i.truth for i in items)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
