"""What a builder declares about its source corpus: licence, citation, modality and its labels.

Records carry this as provenance, the verification stages read the label priors from it, and the
dataset card renders it, so it lives in the core rather than in any one builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelSpec:
    """One target class of a source.

    ``single_region`` keeps every pixel of the label as one target (e.g. diffuse edema) instead of
    splitting it into connected components; ``min_size`` drops components smaller than that many
    pixels (they are recorded as dropped, not lost silently). ``area_mm2_range`` is the plausible
    physical size of one instance, used by the medical-prior check when spacing is known.
    ``laterality`` ("left"/"right") is the patient side the label must lie on (e.g. a left
    kidney), checked by the medical-prior stage when the record knows its patient side.
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
    neutral_words: tuple[str, ...] = ()
    appearance_words: tuple[str, ...] = ()

    @property
    def terms(self) -> tuple[str, ...]:
        """The clinical name followed by its synonyms, for query wording."""
        return (self.display, *self.synonyms)


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
