"""The verification stages: format -> geometry -> medical prior -> visual, each a list of named
checks that pass or fail with a reason.

Target-level checks (the box, the label's priors, the offline visual statistics) are the same for
every query of a target and are computed once; query-level checks read the query's claims
(:mod:`.claims`). A query is kept only when every check of every stage passed; checking stops at
the first failing stage, whose first failing check is the query's rejection reason.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
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
# digits that are no coordinates: clock positions ("3 o'clock") and MRI sequence names ("T1c")
_NAMED_DIGITS = re.compile(
    r"\b\d{1,2}[\s-]*o['’]?\s*clock\b|\bt[12](?:c|ce|gd|w|-weighted|[\s-]flair)?(?![\w])|\bt2\*",
    re.I,
)
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
    coords = _DIGITS.search(_NAMED_DIGITS.sub(" ", text)) or _COORD_WORDS.search(text)
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
        noun_phrase(text),
    ]


@lru_cache(maxsize=1)
def _requests() -> tuple[re.Pattern, re.Pattern]:
    """Openings of a command or request, and request phrases anywhere, from the lexicon."""
    lex = vocab.lexicon("claims")
    opening = [*lex["imperatives"], *lex["sentence_openers"]]
    start = re.compile(rf"^\W*({vocab.alternation_body(opening)})\b", re.I)
    anywhere = re.compile(rf"\b({vocab.alternation_body(lex['requests'])})\b", re.I)
    return start, anywhere


def noun_phrase(text: str) -> Verdict:
    """A referring expression is a noun phrase: no command ("locate the ..."), request ("can
    you ..."), question or sentence ("there is ...")."""
    start, anywhere = _requests()
    m = start.search(text) or anywhere.search(text)
    if m:
        return Verdict(
            "format",
            "noun_phrase",
            False,
            f"a command or request, not a noun phrase: {m.group(1)!r}",
        )
    if "?" in text:
        return Verdict("format", "noun_phrase", False, "a question, not a noun phrase")
    return Verdict("format", "noun_phrase", True, "a noun phrase")


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


def _claim_verdict(check: str, found: Sequence[claims.Claim], record: Mapping, scene) -> Verdict:
    false = [c for c in found if not c.holds(record, scene)]
    if false:
        return Verdict("geometry", check, False, false[0].why_false(record, scene))
    if not found:
        return Verdict("geometry", check, True, "no claim")
    return Verdict("geometry", check, True, "; ".join(c.phrase for c in found))


def geometry_checks(parsed: claims.Parsed, record: Mapping, scene: claims.Scene) -> list[Verdict]:
    """Position, relational and size/shape claims are true, every word is understood
    (fail closed), and the query singles the target out among its candidates."""
    out = []
    for check in ("spatial", "relational", "morphology"):
        problem = next((p for c, p in parsed.problems if c == check), None)
        if problem:
            out.append(Verdict("geometry", check, False, problem))
        else:
            out.append(_claim_verdict(check, parsed.by_check(check), record, scene))
    out.append(unverifiable_check(parsed))
    unique, reason = claims.singles_out(parsed, record, scene)
    out.append(Verdict("geometry", "unique", unique, reason))
    return out


def unverifiable_check(parsed: claims.Parsed) -> Verdict:
    """Fail closed: every word is a checked claim or neutral; the rest is named."""
    problems = [p for c, p in parsed.problems if c == "unverifiable"]
    if parsed.unknown:
        words = ", ".join(f"'{w}'" for w in dict.fromkeys(parsed.unknown))
        problems.insert(0, f"words no rule can check: {words}")
    if problems:
        return Verdict("geometry", "unverifiable", False, "; ".join(problems))
    return Verdict("geometry", "unverifiable", True, "every word understood")


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


def _names(spec: LabelSpec) -> list[str]:
    return [*spec.terms, spec.name.replace("_", " ")]


def naming(
    parsed: claims.Parsed, spec: LabelSpec, labels: Collection[str]
) -> tuple[bool, list[str]]:
    """Whether the query names the target's label, and the terms of other labels it uses for
    the target (a term as a relation's object, "next to the edema", is no name)."""
    named = any(name == spec.name for _, name in parsed.named)
    wrong = [term for term, name in parsed.named if name != spec.name and name in labels]
    return named, wrong


def shown_organs(record: Mapping, spec: LabelSpec) -> set[str]:
    """The organ groups the image shows: its body part, its label's terms, its relations."""
    said = " ".join([record["body_part"] or "", *_names(spec), *_related(record)])
    return vocab.organs_in(vocab.american(said.lower()))


def _anatomy(parsed: claims.Parsed, record: Mapping, spec: LabelSpec) -> Verdict:
    shown = shown_organs(record, spec)
    for word, groups in parsed.organs:
        verdict = vocab.organ_verdict(groups, shown)
        if verdict == "wrong":
            return Verdict(
                "medical_prior",
                "anatomy",
                False,
                f"names the {word}, but this image shows the {record['body_part']}",
            )
        if verdict == "subregion":
            return Verdict(
                "medical_prior",
                "anatomy",
                False,
                f"'{word}': where in the {record['body_part']} the target lies is unverifiable",
            )
        if verdict == "unknown":
            return Verdict(
                "medical_prior",
                "anatomy",
                False,
                f"'{word}': unverifiable, the image's body part is {record['body_part']!r}",
            )
    if parsed.organs:
        return Verdict("medical_prior", "anatomy", True, f"{parsed.organs[0][0]}: shown")
    return Verdict("medical_prior", "anatomy", True, "no organ named")


def _modality(parsed: claims.Parsed, record: Mapping) -> tuple[Verdict, list[str]]:
    """Every technique or sequence word names the rendering; appearance ones ("enhancing")
    are returned for the judge."""
    panels = vocab.rendered(record["modality"] or "")
    judged = []
    for word, claim in parsed.modalities:
        techniques = {p.technique for p in panels}
        problem = None
        if not panels:
            problem = f"'{word}': unverifiable, the image's modality is {record['modality']!r}"
        elif claim.technique not in techniques:
            problem = f"names another modality ({word}) for a {record['modality']} image"
        elif claim.sequence:
            mri = [p for p in panels if p.technique == "mri"]
            if not any(p.sequence == claim.sequence for p in mri):
                if any(p.sequence is None for p in mri):
                    problem = f"'{word}': unverifiable, the MRI sequence is not known"
                else:
                    shown = ", ".join(p.sequence or "?" for p in mri)
                    problem = (
                        f"names another sequence ({word}) for a {record['modality']} image "
                        f"(shows {shown})"
                    )
        if problem:
            return Verdict("medical_prior", "modality_words", False, problem), judged
        if claim.appearance:
            judged.append(word)
    if parsed.modalities:
        said = ", ".join(w for w, _ in parsed.modalities)
        return Verdict("medical_prior", "modality_words", True, f"{said}: as rendered"), judged
    return Verdict("medical_prior", "modality_words", True, "no other modality named"), judged


def prior_query_checks(
    parsed: claims.Parsed, text: str, record: Mapping, spec: LabelSpec, labels: Collection[str]
) -> tuple[list[Verdict], list[str]]:
    """The query names the target as its label (or generically) and by no other label, names
    only organs the image shows and only its own modality and sequence; also returns the
    appearance words of modality terms ("enhancing"), which only the judge can confirm."""
    named, wrong = naming(parsed, spec, labels)
    generic = bool(parsed.generic)
    modality, judged = _modality(parsed, record)
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
        _anatomy(parsed, record, spec),
        modality,
    ], judged


def appearance_check(words: Sequence[str], judge: bool) -> Verdict:
    """Appearance words only a VLM judge can confirm: left to it, or rejected without one."""
    if not words:
        return Verdict("visual", "appearance", True, "no appearance words")
    said = ", ".join(f"'{w}'" for w in dict.fromkeys(words))
    if judge:
        return Verdict("visual", "appearance", True, f"left to the VLM judge: {said}")
    return Verdict(
        "visual",
        "appearance",
        False,
        f"appearance words only a VLM judge can confirm (--judge): {said}",
    )


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
def label_terms(labels: Mapping[str, LabelSpec]) -> dict[str, str]:
    """Every term a query may use for a label (lower case, American spelling, as the claims
    parser reads queries) -> the label's name."""
    return {
        vocab.american(term.lower()): name for name, spec in labels.items() for term in _names(spec)
    }


@lru_cache(maxsize=1024)
def _parse(
    text: str,
    structures: tuple[tuple[str, str], ...],
    labels: frozenset[str],
    neutral: tuple[str, ...],
    appearance: tuple[str, ...],
) -> claims.Parsed:
    """A query's claims, parsed once per text and grammar: templates word many targets' queries
    alike, in every chunk of a build (the checks only read what a parse found). The cache is
    small: the repeated wordings stay in it, and memory does not grow with the corpus."""
    return claims.parse(
        text, dict(structures), labels=labels, neutral=neutral, appearance=appearance
    )


class Verifier:
    """Runs the offline stages for one source's records; ``structures`` maps terms to the names
    used in ``relations`` (labels and context structures). With ``judge`` (a VLM judge will see
    every query that passes), appearance words are left to the judge instead of rejected."""

    def __init__(
        self,
        labels: Mapping[str, LabelSpec],
        structures: Mapping[str, str],
        *,
        judge: bool = False,
    ):
        self.labels = labels
        self.structures = {**label_terms(labels), **structures}
        self.judge = judge
        self.neutral = tuple(w for spec in labels.values() for w in spec.neutral_words)
        self.appearance = tuple(w for spec in labels.values() for w in spec.appearance_words)
        self._grammar = (
            tuple(self.structures.items()),
            frozenset(self.labels),
            self.neutral,
            self.appearance,
        )

    def parse(self, text: str) -> claims.Parsed:
        return _parse(text, *self._grammar)

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
        siblings: Sequence[Mapping],
    ) -> list[Verdict]:
        """All verdicts up to and including the first failing stage (online judge excluded).
        ``siblings`` are the targets of the record's image (itself included; empty for an
        image with one target)."""
        verdicts = format_checks(text, style)
        if not all(v.passed for v in verdicts):
            return verdicts
        parsed = self.parse(text)
        spec = self.labels[record["label"]]
        named, wrong = naming(parsed, spec, self.labels)
        scene = claims.Scene(
            tuple(siblings) if siblings else (record,),
            by_label=named or bool(wrong),  # "the lesion": unique among every target
            labels=self.labels,
        )
        priors, judged = prior_query_checks(parsed, text, record, spec, self.labels)
        stages = (
            ("geometry", lambda: geometry_checks(parsed, record, scene)),
            ("medical_prior", lambda: priors),
            ("visual", lambda: [appearance_check([*parsed.appearance, *judged], self.judge)]),
        )
        for stage, query_level in stages:
            batch = target[stage] + query_level()
            verdicts += batch
            if not all(v.passed for v in batch):
                break
        return verdicts


def first_failure(verdicts: Sequence[Mapping]) -> Mapping | None:
    return next((v for v in verdicts if not v["passed"]), None)
