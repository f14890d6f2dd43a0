"""Which card licence a derived dataset may be published under, from its sources' licence terms.

A built dataset is an adaptation of every source it draws on: its images are the sources' images
(or slices of their volumes), its boxes and masks come from their expert masks. So the card's
licence must honour each source's terms, element by element (Creative Commons):

* **BY** (attribution): the card licence must require attribution too (any CC BY licence,
  ``odc-by``, ``odbl``); ``cc0-1.0`` would drop it.
* **NC** (non-commercial; also a source declared ``commercial_use: false``): the card licence
  must be NC as well.
* **SA** (ShareAlike): adaptations are shared under the same licence elements, at the source's
  version or a later one (CC BY-NC-SA 3.0 allows CC BY-NC-SA 4.0, not CC BY-NC 4.0); ``odbl``
  likewise stays ``odbl``.
* **ND** (no derivatives): adapted material may not be shared at all, so such a source can never
  be published as a derived dataset.
* ``cc0-1.0`` and ``pddl`` sources impose nothing.

A card may list several licences: each one is checked against every source (a list granting
``cc-by-4.0`` for some of the data grants it for all we can tell). ``other`` and ``unknown`` are
accepted only with the per-source licence list in the card (``license_details``, which the card
renderer writes, naming each source's licence): then each record's ``source_license`` says which
terms apply to it, and the NC/SA terms travel with the records. A source whose own licence is
``unknown`` cannot be published until its licence is set. A licence id this module does not know
(``mit``, ``apache-2.0``, ...) is checked only for equality: the card must carry that same id,
or ``other`` with the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_CC = re.compile(r"^cc-(by(?:-(?:nc|sa|nd))*)-(\d+(?:\.\d+)*)$")
PUBLIC_DOMAIN = ("cc0-1.0", "pddl")
OPEN_IDS = ("other", "unknown")  # say nothing by themselves: need the per-source list
ATTRIBUTION = ("odc-by", "odbl")  # data licences requiring attribution (odbl: and ShareAlike)


@dataclass(frozen=True)
class Licence:
    """A licence id read into its terms."""

    id: str
    family: str  # cc | public-domain | odc-by | odbl | open (other/unknown) | unrecognised
    elements: frozenset[str] = frozenset()  # CC: by, nc, sa, nd
    version: tuple[int, ...] = ()

    @property
    def non_commercial(self) -> bool:
        return "nc" in self.elements

    @property
    def attribution(self) -> bool:
        return "by" in self.elements or self.family in ATTRIBUTION


def parse(text: str) -> Licence:
    """``cc-by-nc-sa-3.0`` -> CC with elements {by, nc, sa}, version (3, 0); case-insensitive."""
    lid = text.strip().lower()
    match = _CC.match(lid)
    if match:
        elements = frozenset(match[1].split("-"))
        return Licence(lid, "cc", elements, tuple(int(v) for v in match[2].split(".")))
    if lid in PUBLIC_DOMAIN:
        return Licence(lid, "public-domain")
    if lid in ATTRIBUTION:
        return Licence(lid, lid)
    if lid in OPEN_IDS or not lid:
        return Licence(lid or "unknown", "open")
    return Licence(lid, "unrecognised")


@dataclass(frozen=True)
class Source:
    """A source as far as its licence goes."""

    name: str
    title: str
    license: str
    commercial_use: bool


def listed(source: Source, details: str) -> bool:
    """Whether the card's per-source licence list names this source and its licence."""
    text = details.lower()
    return source.license.lower() in text and (
        source.title.lower() in text or source.name.lower() in text
    )


def problem(source: Source, card: str, details: str | None) -> str | None:
    """Why ``source`` may not be published under the card licence ``card`` (None: it may)."""
    s, c = parse(source.license), parse(card)
    who = f"{source.name} ({source.license})"
    if s.family == "open":
        if s.id == "unknown":
            return (
                f"{who}: the source's licence is unknown; set it (builder option license=...) "
                "before publishing"
            )
        if c.family != "open":
            return f"{who}: a source under its own terms publishes as `other` with the list"
    if "nd" in s.elements:
        return (
            f"{who} forbids sharing adapted material (NoDerivatives): a dataset derived from it "
            "cannot be published"
        )
    if c.family == "open":
        if not details or not listed(source, details):
            return (
                f"card licence {card!r} needs the per-source licence list in the card "
                f"(license_details) naming {source.title}: {source.license}"
            )
        return None
    if c.family == "unrecognised" or s.family == "unrecognised":
        if c.id != s.id:
            return (
                f"{who} under card licence {card!r}: only the same licence (or `other` with "
                "the per-source list) can be checked"
            )
        return None
    if (s.non_commercial or not source.commercial_use) and not c.non_commercial:
        return (
            f"card licence {card!r} allows commercial use, but {who} must not be used "
            "commercially: use a non-commercial (-nc-) licence"
        )
    if "sa" in s.elements and (
        c.family != "cc" or c.elements != s.elements or c.version < s.version
    ):
        return (
            f"{who} is ShareAlike: adaptations must keep its licence elements "
            f"(cc-{'-'.join(e for e in ('by', 'nc', 'sa') if e in s.elements)}) at version "
            f"{'.'.join(map(str, s.version))} or later; card licence {card!r} does not"
        )
    if s.family == "odbl" and c.id != "odbl":
        return f"{who} is ShareAlike: adaptations stay under odbl, not {card!r}"
    if s.attribution and not c.attribution:
        return f"{who} requires attribution, which card licence {card!r} drops"
    return None


def card_licences(value: str | Sequence[str] | None) -> list[str]:
    """The card's ``license`` as a list of ids (a YAML list, or one id)."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def sources_of(manifest: Mapping, record_licences: Iterable[tuple[str, str]] = ()) -> list[Source]:
    """The manifest's sources, plus any (source, licence) pair found in the records that the
    manifest does not declare (a record carries its own licence)."""
    sources = [
        Source(s["name"], s.get("title", s["name"]), s["license"], bool(s.get("commercial_use")))
        for s in manifest["sources"]
    ]
    declared = {(s.name, s.license) for s in sources}
    titles = {s.name: s.title for s in sources}
    for name, lid in sorted(set(record_licences) - declared):
        commercial = not parse(lid).non_commercial
        sources.append(Source(name, titles.get(name, name), lid, commercial))
    return sources


def problems(sources: Sequence[Source], card: Sequence[str], details: str | None) -> list[str]:
    """Every reason the card licence(s) cannot cover the sources, each once."""
    if not card:
        return ["the card declares no licence"]
    found = [problem(s, lid, details) for lid in card for s in sources]
    return list(dict.fromkeys(p for p in found if p))
