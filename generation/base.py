"""What every query generator and VLM judge shares: results, usage accounting, the interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from medground_hf.errors import BuildError
from medground_hf.source import LabelSpec


class GenerationError(BuildError):
    """The generator cannot go on (service down after retries, bad credentials, bad options);
    a BuildError, so the CLI reports it like any other build failure."""


@dataclass
class Generated:
    """A generator's output for one target.

    ``items`` are the raw query objects (``{"text", "style"}``) as the generator produced them;
    the format stage checks their schema. ``failure`` is ``(stage, reason)`` when the target got
    no usable output at all (a refusal, an unparseable answer).
    """

    items: list[Mapping] = field(default_factory=list)
    failure: tuple[str, str] | None = None


@dataclass
class Usage:
    """Requests sent, cache hits, tokens and cost of a run (printed and put in the manifest)."""

    requests: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        return out


@dataclass(frozen=True)
class Target:
    """A record to write queries for, with what the generator needs besides its cues."""

    record: Mapping
    spec: LabelSpec
    structures: Mapping[str, str]  # relation name -> display term
    vocabulary: Mapping[str, str] = field(default_factory=dict)  # any structure term -> name
    # light cues of the other targets in the image (every label), for comparisons
    siblings: Sequence[Mapping] = ()


class _Worker(ABC):
    """A generator or judge: what it is called in provenance, and what it has spent."""

    name: str
    model: str | None = None
    prompt_version: str
    sees_images = True  # reads ``record["image"]`` (a VLM); False: the record's cues only

    def __init__(self) -> None:
        self.usage = Usage()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""


class Generator(_Worker):
    """Writes referring expressions for targets; identical inputs give identical outputs."""

    @abstractmethod
    def generate(self, targets: Sequence[Target]) -> list[Generated | Exception]:
        """One :class:`Generated` per target, in order.

        A failure on one target is that target's alone: put the exception in its slot (or
        raise it; the pipeline then retries the targets one by one) and the target is rejected
        at ``generation`` with the exception's message. Raise :class:`GenerationError` only for
        what stops every target (service down after retries, bad credentials)."""

    def prefetch(self, targets: Iterable[Target]) -> None:  # noqa: B027 - optional hook
        """Hook for bulk modes (Message Batches): fill the request cache before generating."""


class Judge(_Worker):
    """Decides from the image whether a query singles out its target (the online visual check)."""

    @abstractmethod
    def judge(self, items: Sequence[tuple[Target, str]]) -> list[tuple[bool, str]]:
        """``(passed, reason)`` per ``(target, query text)``."""
