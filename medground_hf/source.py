"""What a builder declares about its source corpus: licence, citation, modality and its labels.

Records carry this as provenance, the verification stages read the label priors from it, and the
dataset card renders it, so it lives in the core rather than in any one builder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SizeClass:
    """A clinical size class of a label by its largest dimension in mm (e.g. a polyp is
    "diminutive" up to 5 mm): ``min_mm <= d`` and ``d <= max_mm`` (``d < max_mm`` when
    ``max_inclusive`` is false); ``None`` leaves a side open."""

    word: str
    min_mm: float | None = None
    max_mm: float | None = None
    max_inclusive: bool = True

    def holds(self, mm: float) -> bool:
        if self.min_mm is not None and mm < self.min_mm:
            return False
        if self.max_mm is None:
            return True
        return mm <= self.max_mm if self.max_inclusive else mm < self.max_mm


# Colorectal polyp size classes (diminutive <= 5 mm, small < 10 mm, large >= 10 mm).
POLYP_SIZE_CLASSES = (
    SizeClass("diminutive", max_mm=5.0),
    SizeClass("small", max_mm=10.0, max_inclusive=False),
    SizeClass("large", min_mm=10.0),
)


@dataclass(frozen=True)
class LabelSpec:
    """One target class of a source.

    ``single_region`` keeps every pixel of the label as one target (e.g. diffuse edema) instead of
    splitting it into connected components; ``min_size`` drops components smaller than that many
    pixels (they are recorded as dropped, not lost silently). ``area_mm2_range`` is the plausible
    physical size of one instance, used by the medical-prior check when spacing is known.
    ``laterality`` ("left"/"right") is the patient side the label must lie on (e.g. a left
    kidney), checked by the medical-prior stage when the record knows its patient side.

    What a viewer can see and say about the label:

    - ``visible_in``: the renderings (record modalities, e.g. ``"MRI T1c"``) that show the label;
      empty means every rendering. Enhancing tumour is seen only after contrast: on a FLAIR
      rendering it is neither named nor kept (a side-by-side image is kept when one of its
      panels shows it).
    - ``fragments``: the label's connected components are pieces of one structure (a ring of
      enhancing tumour cut by the slice), so several of them are named as ``pieces`` ("enhancing
      foci", "regions of necrosis"), never as several tumours.
    - ``size_classes``: clinical size words by the largest dimension in mm (polyps), used only
      when the pixel spacing is known; ``biometric``: the size is a measurement against a norm
      (fetal head), so no size word at all. Other labels get only image-relative wording
      ("occupying a small part of the image").

    ``neutral_words`` and ``appearance_words`` extend the verifier's lexicons for this source:
    words that claim nothing, and appearance words only a VLM judge can confirm.
    """

    id: int
    name: str
    display: str
    synonyms: tuple[str, ...] = ()
    single_region: bool = False
    min_size: int = 16
    area_mm2_range: tuple[float, float] | None = None
    modalities: tuple[str, ...] = ()
    description: str = ""
    laterality: str | None = None
    visible_in: tuple[str, ...] = ()
    fragments: bool = False
    piece_names: tuple[str, ...] = ()  # (one piece, several pieces); default "region(s) of ..."
    size_classes: tuple[SizeClass, ...] = ()
    biometric: bool = False
    neutral_words: tuple[str, ...] = ()
    appearance_words: tuple[str, ...] = ()

    @property
    def terms(self) -> tuple[str, ...]:
        """The clinical name followed by its synonyms and, for fragments, the names of one
        piece and of several (all of them name the label)."""
        return (self.display, *self.synonyms, *(self.pieces if self.fragments else ()))

    @property
    def pieces(self) -> tuple[str, str]:
        """How one piece and several pieces of a fragmented label are named."""
        if len(self.piece_names) == 2:
            return self.piece_names[0], self.piece_names[1]
        return f"region of {self.display}", f"regions of {self.display}"

    def visible_on(self, modality: str) -> bool:
        """Whether a rendering shows the label: one of its panels (``" | "``-joined record
        modalities) is among ``visible_in`` (case-insensitive), or no limit is declared."""
        if not self.visible_in:
            return True
        allowed = {m.strip().lower() for m in self.visible_in}
        return any(panel.strip().lower() in allowed for panel in modality.split("|"))

    def size_words(self, largest_mm: float | None) -> tuple[str, ...]:
        """The clinical size words true of a target whose largest dimension is ``largest_mm``
        (none without spacing, without declared classes, or for a biometric label)."""
        if largest_mm is None or self.biometric:
            return ()
        return tuple(c.word for c in self.size_classes if c.holds(largest_mm))


# ---- display names ------------------------------------------------------------------------------
# Label names that are abbreviations, with what they stand for (BraTS, radiotherapy, cardiac,
# neuro): "the largest of the three nets" reads as nonsense, so they need a display name.
ABBREVIATIONS = {
    "et": "enhancing tumour",
    "net": "non-enhancing tumour",
    "ncr": "necrotic tumour core",
    "ed": "peritumoral edema",
    "wt": "whole tumour",
    "tc": "tumour core",
    "snfh": "surrounding non-enhancing FLAIR hyperintensity",
    "rc": "resection cavity",
    "gtv": "gross tumour volume",
    "ctv": "clinical target volume",
    "ptv": "planning target volume",
    "oar": "organ at risk",
    "lv": "left ventricle",
    "rv": "right ventricle",
    "myo": "myocardium",
    "la": "left atrium",
    "ra": "right atrium",
    "ivc": "inferior vena cava",
    "svc": "superior vena cava",
    "csf": "cerebrospinal fluid",
    "wm": "white matter",
    "gm": "grey matter",
    "ich": "intracerebral haemorrhage",
    "sah": "subarachnoid haemorrhage",
    "ggo": "ground-glass opacity",
    "ln": "lymph node",
}
# Words that say nothing about what the target is.
PLACEHOLDERS = frozenset(
    {
        "label",
        "class",
        "mask",
        "foreground",
        "background",
        "object",
        "roi",
        "segment",
        "segmentation",
        "annotation",
        "unknown",
        "other",
        "target",
        "value",
    }  # fmt: skip
)
# Prefixes whose hyphen stays when a hyphenated name is split into words ("non-enhancing").
_PREFIXES = frozenset(
    "non pre post peri intra extra sub para inter trans supra infra hyper hypo co anti semi "  # noqa: SIM905
    "multi mid retro juxta".split()
)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def humanise(name: str) -> str:
    """A source label name as words: ``right-cerebral-white-matter``, ``Right_Kidney`` and
    ``RightKidney`` -> "right cerebral white matter", "right kidney"; acronyms (``CSF``) and
    prefixes ("non-enhancing") are kept."""
    text = _CAMEL.sub(" ", name.strip()).replace("_", " ")
    if " " not in text and "-" in text:  # a slug: its hyphens separate words
        parts = text.split("-")
        words = [parts[0]]
        for part in parts[1:]:
            if words[-1].lower() in _PREFIXES:
                words[-1] += "-" + part
            else:
                words.append(part)
        text = " ".join(words)
    return " ".join(w if (w.isupper() and len(w) > 1) else w.lower() for w in text.split())


def display_name(name: str, overrides: Mapping[str, str] | None = None, *keys: str) -> str:
    """The display name of a label: the user's override (looked up by ``name`` and any of
    ``keys``, e.g. the raw name a slug came from), else the name humanised."""
    for key in (name, *keys):
        if overrides and key in overrides:
            return str(overrides[key]).strip()
    return humanise(keys[0] if keys else name)


def display_problem(display: str) -> str | None:
    """Why ``display`` cannot name a target in an English query, or None when it can."""
    words = re.findall(r"[^\s-]+", display)
    if not words:
        return "it is empty"
    for word in words:
        lower = word.lower()
        if lower in ABBREVIATIONS:
            return f"{word!r} is an abbreviation (of {ABBREVIATIONS[lower]!r}?)"
        if any(ch.isdigit() for ch in word):
            return f"{word!r} has digits, which queries cannot carry"
        if not word.isascii() or not word.replace("'", "").isalpha():
            return f"{word!r} is not an English word"
        if lower in PLACEHOLDERS:
            return f"{word!r} does not say what the structure is"
        if len(word) == 1 or not re.search(r"[aeiouy]", lower):
            return f"{word!r} reads as an abbreviation"
    return None


def check_display_names(labels: Sequence[LabelSpec], option: str) -> None:
    """Raise ValueError naming the first label whose display name no English query can use,
    and ``option``, the builder option that sets it."""
    for spec in labels:
        problem = display_problem(spec.display)
        if problem:
            example = ABBREVIATIONS.get(spec.display.lower(), "<clinical name>")
            raise ValueError(
                f"label {spec.name!r} has no usable English display name ({spec.display!r}: "
                f"{problem}); set one with {option.format(name=spec.name, example=example)}"
            )


@dataclass(frozen=True)
class SourceInfo:
    """Metadata of one source corpus, as the card and every record's provenance need it."""

    name: str
    title: str
    license: str
    license_url: str
    commercial_use: bool
    homepage: str
    citation: str
    modality: str
    body_part: str
    description: str
    labels: tuple[LabelSpec, ...] = field(default_factory=tuple)

    def label(self, name: str) -> LabelSpec:
        for spec in self.labels:
            if spec.name == name:
                return spec
        raise KeyError(f"source {self.name!r} has no label {name!r}")
