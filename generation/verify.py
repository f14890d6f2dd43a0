"""The verification stages: format -> geometry -> medical prior -> visual, each a list of named
checks that pass or fail with a reason.

Target-level checks (the box, the label's priors, the offline visual statistics) are the same for
every query of a target and are computed once; query-level checks read the query's claims
(:mod:`.claims`). A query is kept only when every check of every stage passed; checking stops at
the first failing stage, whose first failing check is the query's rejection reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pycocotools import mask as mask_utils

from medground_hf.geometry import coco_rle
from medground_hf.source import LabelSpec

from . import claims, vocab

STAGES = ("format", "geometry", "medical_prior", "visual")
STYLES = ("location", "morphology", "relational", "clinical")

# format
MIN_CHARS, MAX_CHARS = 8, 200
MIN_WORDS, MAX_WORDS = 2, 40
_DIGITS = re.compile(r"\d")
_COORD_WORDS = re.compile(r"\b(pixels?|coordinates?|x-axis|y-axis|xyxy|bbox)\b", re.I)
_MARKUP = re.compile(r"[<>\[\]{}*#`|\\_]|&[a-z]+;|\bjson\b", re.I)
_META = re.compile(
    r"\b(as an ai|language model|i cannot|i can't|i'm sorry|sorry|here is|here are|query:|"
    r"bounding box|box|mask|segmentation|annotat\w*|outlined|highlighted|marked|contour|"
    r"labell?ed)\b",
    re.I,
)
_FUNCTION_WORDS = frozenset(
    "the a an of in on at with near to this that is and its from by for".split()  # noqa: SIM905
)
# Function words of other languages that English never uses: written without accents, a
# Spanish or Italian query is otherwise plain ASCII ("el polipo en la imagen").
_FOREIGN_WORDS = frozenset(
    "der die das und im ein eine einer mit von auf links rechts le les des du une et dans sur "  # noqa: SIM905
    "el los las una con del en la il lo gli della nella di sulla het een van op och".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

# geometry: a box covering more than this share of the image does not localize anything.
MAX_BOX_FRACTION = 0.95
MIN_BOX_SIDE = 2

# visual (offline): a target is distinct when its region differs from a ring around it
# (medground_hf.cues.visual_stats ``contrast`` >= MIN_CONTRAST) or, for a structure seen by its
# boundary (a fetal skull: a bright ring around a grey interior), when the thin bands inside and
# outside its outline differ (``edge_contrast`` >= MIN_EDGE_CONTRAST; thin bands are noisier,
# hence the higher bar). At most MAX_BLANK of the region may be padding/blank pixels.
MIN_CONTRAST = 0.1
MIN_EDGE_CONTRAST = 0.3
MAX_BLANK = 0.5


@dataclass(frozen=True)
class Verdict:
    stage: str
    check: str
    passed: bool
    reason: str

    def row(self) -> dict:
        return {
            "stage": self.stage,
            "check": self.check,
            "passed": self.passed,
            "reason": self.reason,
        }


def _v(stage: str, check: str, ok: bool, good: str, bad: str) -> Verdict:
    return Verdict(stage, check, ok, good if ok else bad)


# ---- format ---------------------------------------------------------------------------------
def format_checks(text: object, style: object) -> list[Verdict]:
    """Schema, length, no coordinates, no markup, no meta talk, English, plain grammar."""
    if not isinstance(text, str) or not text.strip() or style not in STYLES:
        return [
            Verdict(
                "format",
                "schema",
                False,
                f"query must be a non-empty string with a style in {STYLES}, got "
                f"text={text!r:.60} style={style!r}",
            )
        ]
    words = _WORD.findall(text)
    letters = [c for c in text if c.isalpha()]
    ascii_share = sum(c.isascii() for c in letters) / max(1, len(letters))
    lowered = {w.lower() for w in words}
    english = (
        ascii_share >= 0.98 and bool(lowered & _FUNCTION_WORDS) and not lowered & _FOREIGN_WORDS
    )
    meta = _META.search(text)
    markup = _MARKUP.search(text)
    coords = _DIGITS.search(text) or _COORD_WORDS.search(text)
    return [
        Verdict("format", "schema", True, "text and style present"),
        _v(
            "format",
            "length",
            MIN_CHARS <= len(text) <= MAX_CHARS and MIN_WORDS <= len(words) <= MAX_WORDS,
            f"{len(words)} words",
            f"length {len(text)} chars / {len(words)} words outside "
            f"[{MIN_CHARS}, {MAX_CHARS}] chars, [{MIN_WORDS}, {MAX_WORDS}] words",
        ),
        _v(
            "format",
            "no_coordinates",
            not coords,
            "no numbers or coordinates",
            f"numbers or coordinates are not allowed: {coords.group(0) if coords else ''!r}",
        ),
        _v(
            "format",
            "no_markup",
            not markup,
            "plain text",
            f"markup is not allowed: {markup.group(0) if markup else ''!r}",
        ),
        _v(
            "format",
            "no_meta",
            not meta,
            "no meta talk",
            f"meta talk or annotation words: {meta.group(0) if meta else ''!r}",
        ),
        _v("format", "english", english, "English", "not English text"),
        _grammar(text),
    ]


# "a" before a vowel sound, "an" before a consonant sound (lower-case words: acronyms such as
# "an MRI" are spelled letter by letter and left alone), a word written twice in a row.
_A_BEFORE_VOWEL = re.compile(r"\ba\s+(?!one\b|once\b|uni|use|usu|eu|ur)([aeiou][a-z-]*)")
_AN_BEFORE_CONSONANT = re.compile(r"\ban\s+(?!hour|honest|hon)([b-df-hj-np-tv-z][a-z-]*)\b")
_REPEATED = re.compile(r"\b(\w+)\s+\1\b", re.I)


def _grammar(text: str) -> Verdict:
    for pattern, what in (
        (_A_BEFORE_VOWEL, "'a' before a vowel"),
        (_AN_BEFORE_CONSONANT, "'an' before a consonant"),
        (_REPEATED, "a word written twice"),
    ):
        m = pattern.search(text)
        if m:
            return Verdict("format", "grammar", False, f"{what}: {m.group(0)!r}")
    return Verdict("format", "grammar", True, "articles and words in order")


# ---- geometry -------------------------------------------------------------------------------
def box_check(record: Mapping) -> Verdict:
    """Inside the image, not degenerate, not nearly the whole image, the tight box of its mask."""
    x0, y0, x1, y1 = record["bbox_xyxy"]
    w, h = record["width"], record["height"]
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        return Verdict("geometry", "box", False, f"box {[x0, y0, x1, y1]} outside {w}x{h} image")
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        return Verdict("geometry", "box", False, f"degenerate box {x1 - x0}x{y1 - y0} px")
    share = (x1 - x0) * (y1 - y0) / (w * h)
    if share > MAX_BOX_FRACTION:
        return Verdict(
            "geometry",
            "box",
            False,
            f"box covers {share:.0%} of the image (> {MAX_BOX_FRACTION:.0%})",
        )
    mx, my, mw, mh = (int(round(v)) for v in mask_utils.toBbox(coco_rle(record["mask"])))
    if [mx, my, mx + mw, my + mh] != [x0, y0, x1, y1]:
        return Verdict("geometry", "box", False, "box is not the tight box of the mask")
    return Verdict("geometry", "box", True, f"box covers {share:.0%} of the image")


def _claim_verdict(
    stage: str, check: str, found: Sequence[claims.Claim], record: Mapping
) -> Verdict:
    false = [c for c in found if not c.holds(record)]
    if false:
        return Verdict(stage, check, False, false[0].why_false(record))
    if not found:
        return Verdict(stage, check, True, "no claim")
    return Verdict(stage, check, True, "; ".join(c.phrase for c in found))


def geometry_checks(
    parsed: claims.Parsed, record: Mapping, siblings: list[Mapping], *, any_label: bool = False
) -> list[Verdict]:
    """Spatial words, relational claims and shape words are true; the query singles one out
    (among every target of the image when it names no label, ``any_label``)."""
    out = []
    for check in ("spatial", "relational", "morphology"):
        problem = next((p for c, p in parsed.problems if c == check), None)
        if problem:
            out.append(Verdict("geometry", check, False, problem))
        else:
            out.append(_claim_verdict("geometry", check, parsed.by_check(check), record))
    unique, reason = claims.singles_out(parsed, record, siblings, any_label=any_label)
    out.append(Verdict("geometry", "unique", unique, reason))
    return out


# ---- medical priors -------------------------------------------------------------------------
def prior_target_checks(record: Mapping, spec: LabelSpec) -> list[Verdict]:
    """Label-modality compatibility, laterality and physical size, from the builder's LabelSpec."""
    modality = record["modality"]
    allowed = [m.lower() for m in spec.modalities]
    # side-by-side renderings join their modalities with " | ": each panel must be plausible;
    # a panel "MRI t1" matches an allowed family "MRI" as well as the exact "MRI t1"
    panels = [part.strip().lower() for part in modality.split("|")]

    def plausible(panel: str) -> bool:
        return any(panel == a or panel.startswith(a + " ") for a in allowed)

    out = [
        _v(
            "medical_prior",
            "modality",
            not allowed or all(plausible(panel) for panel in panels),
            f"{spec.name} is expected in {modality}" if allowed else "no modality prior",
            f"{spec.name} is not expected in {modality} (allowed: {', '.join(allowed)})",
        )
    ]
    side = record["spatial"]["patient_side"]
    out.append(
        _v(
            "medical_prior",
            "laterality",
            spec.laterality is None or side == spec.laterality,
            f"on the patient's {side}" if spec.laterality else "no laterality prior",
            f"{spec.name} must be on the patient's {spec.laterality}, found {side}",
        )
    )
    area = record["area_mm2"]
    if area is None or spec.area_mm2_range is None:
        out.append(
            Verdict(
                "medical_prior",
                "size_range",
                True,
                "no pixel spacing" if area is None else "no size prior",
            )
        )
    else:
        low, high = spec.area_mm2_range
        out.append(
            _v(
                "medical_prior",
                "size_range",
                low <= area <= high,
                f"{area:.0f} mm2 within [{low:g}, {high:g}]",
                f"{area:.0f} mm2 outside the plausible {spec.name} range [{low:g}, {high:g}] mm2",
            )
        )
    return out


def _related(record: Mapping) -> list[str]:
    rel = record["relations"]
    return [n.replace("_", " ") for k in ("inside", "adjacent_to", "contains") for n in rel[k]]


@lru_cache(maxsize=4096)
def _term_pattern(term: str) -> str:
    """A whole term in (lower case, American) text: "enhancing tumor" is not found inside
    "non-enhancing tumor"; plurals included."""
    word = re.escape(vocab.american(term.lower()))
    return rf"(?<![\w-]){word}(e?s)?\b"


def _mentions(text: str, term: str) -> bool:
    return re.search(_term_pattern(term), text) is not None


def _names(spec: LabelSpec) -> list[str]:
    return [*spec.terms, spec.name.replace("_", " ")]


def naming(
    parsed: claims.Parsed, lower: str, spec: LabelSpec, others: Sequence[LabelSpec]
) -> tuple[bool, list[str]]:
    """Whether the query (``lower``: lower case, American) names the target's label, and the
    terms of other labels it names outside a checked relation ("next to the edema" is a
    relation; "the edema region" calls the target edema)."""
    named = any(_mentions(lower, t) for t in _names(spec))
    rest = parsed.rest
    for term in sorted(_names(spec), key=len, reverse=True):
        rest = re.sub(_term_pattern(term), " ", rest)
    wrong = [
        t
        for other in others
        if other.name != spec.name
        for t in _names(other)
        if _mentions(rest, t)
    ]
    return named, wrong


def prior_query_checks(
    parsed: claims.Parsed,
    text: str,
    record: Mapping,
    spec: LabelSpec,
    others: Sequence[LabelSpec] = (),
) -> list[Verdict]:
    """The query names the target as its label (or generically), calls it by no other label of
    the source, names no organ the image does not show (when its body part is a known organ)
    and no other modality."""
    lower = vocab.american(text.lower())
    named, wrong = naming(parsed, lower, spec, others)
    generic = any(_mentions(lower, t) for t in vocab.GENERIC_NOUNS)
    shown = vocab.organs_in(
        vocab.american(" ".join([record["body_part"], *_names(spec), *_related(record)]).lower())
    )
    shown |= {g for group in shown for g in vocab.ORGANS_SEEN_WITH.get(group, ())}
    elsewhere = sorted(vocab.organs_in(lower) - shown) if shown else []
    own = vocab.modality_key(record["modality"])
    foreign = [
        w
        for key, words in vocab.MODALITY_WORDS.items()
        if key != own
        for w in words
        if _mentions(lower, w)
    ]
    return [
        _v(
            "medical_prior",
            "terminology",
            (named or generic) and not wrong,
            "names the target as " + ("its label" if named else "a generic finding"),
            f"calls the target '{wrong[0]}', another label than {spec.display}"
            if wrong
            else f"does not name the target as {spec.display} (terms: {', '.join(spec.terms)})",
        ),
        _v(
            "medical_prior",
            "anatomy",
            not elsewhere,
            "no other organ named",
            f"names the {elsewhere[0] if elsewhere else ''}, but this image shows the "
            f"{record['body_part']}",
        ),
        _v(
            "medical_prior",
            "modality_words",
            not foreign,
            "no other modality named",
            f"names another modality ({foreign[0] if foreign else ''}) for a "
            f"{record['modality']} image",
        ),
    ]


# ---- visual (offline) -----------------------------------------------------------------------
def visual_target_checks(record: Mapping, spec: LabelSpec) -> list[Verdict]:
    """The rendering shows the label, the region is distinct from its surroundings (as a region
    or by its outline) and does not lie in padding/blank area."""
    vis = record["visual"]
    # no edge contrast: the region alone is plainly distinct (cues.EDGE_NEEDED), or an older build
    contrast, edge = vis["contrast"], vis.get("edge_contrast")
    by_region = contrast >= MIN_CONTRAST
    by_edge = edge is not None and edge >= MIN_EDGE_CONTRAST
    edge_text = "n/a" if edge is None else f"{edge:.2f}"
    return [
        _v(
            "visual",
            "rendering",
            spec.visible_on(record["modality"]),
            f"{spec.display} is seen on {record['modality']}",
            f"{spec.display} cannot be seen on {record['modality']} (seen on: "
            f"{', '.join(spec.visible_in)})",
        ),
        _v(
            "visual",
            "distinct",
            by_region or by_edge,
            f"region/ring contrast {contrast:.2f}, edge contrast {edge_text}",
            f"region/ring contrast {contrast:.2f} < {MIN_CONTRAST} and edge contrast "
            f"{edge_text} < {MIN_EDGE_CONTRAST}",
        ),
        _v(
            "visual",
            "not_blank",
            vis["blank_fraction"] <= MAX_BLANK,
            f"blank share {vis['blank_fraction']:.0%}",
            f"{vis['blank_fraction']:.0%} of the region is padding/blank (> {MAX_BLANK:.0%})",
        ),
    ]


# ---- orchestration --------------------------------------------------------------------------
class Verifier:
    """Runs the offline stages for one source's records; ``structures`` maps terms to the names
    used in ``relations`` (labels and context structures)."""

    def __init__(self, labels: Mapping[str, LabelSpec], structures: Mapping[str, str]):
        self.labels = labels
        self.structures = dict(structures)

    def target_checks(self, record: Mapping) -> dict[str, list[Verdict]]:
        spec = self.labels[record["label"]]
        return {
            "geometry": [box_check(record)],
            "medical_prior": prior_target_checks(record, spec),
            "visual": visual_target_checks(record, spec),
        }

    def query_checks(
        self,
        record: Mapping,
        text: object,
        style: object,
        target: Mapping[str, list[Verdict]],
        siblings: list[Mapping],
    ) -> list[Verdict]:
        """All verdicts up to and including the first failing stage (online judge excluded)."""
        verdicts = format_checks(text, style)
        if not all(v.passed for v in verdicts):
            return verdicts
        parsed = claims.parse(text, self.structures)
        spec = self.labels[record["label"]]
        others = list(self.labels.values())
        named, wrong = naming(parsed, vocab.american(text.lower()), spec, others)
        generic = not (named or wrong)  # "the lesion": unique among every target of the image
        stages = (
            ("geometry", lambda: geometry_checks(parsed, record, siblings, any_label=generic)),
            (
                "medical_prior",
                lambda: prior_query_checks(parsed, text, record, spec, others),
            ),
            ("visual", list),
        )
        for stage, query_level in stages:
            batch = target[stage] + query_level()
            verdicts += batch
            if not all(v.passed for v in batch):
                break
        return verdicts


def first_failure(verdicts: Sequence[Mapping]) -> Mapping | None:
    return next((v for v in verdicts if not v["passed"]), None)
