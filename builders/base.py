"""The base of every source builder: list items cheaply, load one item into samples, let the core
turn samples into records.

A subclass declares its :class:`~medground_hf.source.SourceInfo` and implements two methods:
``list_items`` (walk the source layout without decoding anything; group ids and source splits come
from here) and ``load_item`` (decode one item into one or more :class:`~medground_hf.sample.Sample`,
e.g. one per rendered slice of a volume). Splitting, instance extraction, cues, error handling and
the skip report are shared.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets

from medground_hf import storage
from medground_hf.checkpoints import ItemCheckpoints, item_key
from medground_hf.errors import ON_ERROR_CHOICES, InputError, SkipReport, logger
from medground_hf.progress import ProcessBar
from medground_hf.record import GROUNDING_FEATURES
from medground_hf.sample import Sample, sample_to_records
from medground_hf.source import LabelSpec, SourceInfo, check_display_names, display_name
from medground_hf.splits import DEFAULT_RATIOS, assign_split, validate_ratios
from medground_hf.staging import fault


@dataclass(frozen=True)
class Item:
    """One unit of the source (an image/mask pair, a case volume), found without decoding.

    ``extra`` may carry ``("error", problem)``: an item found broken while listing (no mask, two
    files with one key), raised or skipped by ``--on-error`` when its turn comes."""

    key: str
    group: str
    files: tuple[str, ...]
    source_split: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass
class MedGroundConfig(datasets.BuilderConfig):
    """Options every source shares: error policy, split ratios and where skips are reported."""

    on_error: str = "raise"
    split_ratios: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    report_dir: str | None = None
    # Where finished items are checkpointed so an interrupted build resumes (set by the build).
    checkpoint_dir: str | None = None
    # Regex whose group 1, found in an item key, is the patient/subject: items sharing it share
    # a split. None: every item is its own group.
    group_pattern: str | None = None

    def validate(self) -> None:
        """Check and normalise options; subclasses extend it.

        The builder calls it once ``datasets`` has applied the user's overrides (which it sets
        after ``__post_init__``) and before any option is read, so every option check lives here
        and runs on the final values.
        """
        if self.on_error not in ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")
        validate_ratios(self.split_ratios)


@dataclass
class LabelOptions:
    """How a builder whose labels are only names (a label map, ``dataset.json``) words them.

    ``label_display`` maps a label name to the clinical name queries use (default: the name
    humanised, ``right-cerebral-white-matter`` -> "right cerebral white matter"); a name that no
    English query can use ("et", "L1") stops the build at its start, naming this option.
    ``single_region_labels`` keep each of those labels as one region per image;
    ``fragment_labels`` are labels whose components are pieces of one structure (named
    "regions of ..." when there are several).
    """

    label_display: Mapping[str, str] = field(default_factory=dict)
    single_region_labels: tuple[str, ...] = ()
    fragment_labels: tuple[str, ...] = ()

    def label_spec(self, label_id: int, name: str, raw: str | None = None, **kwargs) -> LabelSpec:
        """The LabelSpec of label ``name`` (``raw``: the source's own spelling of it)."""
        return LabelSpec(
            id=label_id,
            name=name,
            display=display_name(name, self.label_display, *([raw] if raw else [])),
            single_region=name in self.single_region_labels,
            fragments=name in self.fragment_labels,
            **kwargs,
        )


LABEL_DISPLAY_OPTION = '--set label_display=\'{{"{name}": "{example}"}}\''


@dataclass
class CustomSourceConfig(LabelOptions, MedGroundConfig):
    """Provenance options of the generic builders, whose source is the user's own corpus."""

    source_name: str = "custom"
    source_title: str = "Custom corpus"
    license: str = "unknown"
    license_url: str = ""
    commercial_use: bool = False
    homepage: str = ""
    citation: str = ""
    modality: str = "unknown"
    body_part: str = "unknown"

    def source_info(self, labels: tuple[LabelSpec, ...], what: str) -> SourceInfo:
        """The :class:`SourceInfo` these options describe; ``what`` words the default summary."""
        return SourceInfo(
            name=self.source_name,
            title=self.source_title,
            license=self.license,
            license_url=self.license_url,
            commercial_use=self.commercial_use,
            homepage=self.homepage,
            citation=self.citation,
            modality=self.modality,
            body_part=self.body_part,
            description=self.description or f"{self.source_title}: {what}.",
            labels=labels,
        )


class MedGroundBuilder(datasets.GeneratorBasedBuilder):
    """A ``GeneratorBasedBuilder`` producing canonical grounding records for one source."""

    BUILDER_CONFIG_CLASS = MedGroundConfig
    BUILDER_CONFIGS = [MedGroundConfig(name="default", version=datasets.Version("1.0.0"))]
    DEFAULT_CONFIG_NAME = "default"
    VERSION = datasets.Version("1.0.0")
    RELEASE_NOTES: Mapping[str, str] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = ""
    SOURCE: SourceInfo
    # Why the builder cannot read a URL --data-dir (None: it can, through medground_hf.storage)
    URL_REFUSAL: str | None = None

    # ---- what a subclass provides -------------------------------------------------------------
    @property
    def source(self) -> SourceInfo:
        return self.SOURCE

    def list_items(self, data_dir: Path) -> list[Item]:
        raise NotImplementedError

    def group_of(self, key: str) -> str:
        """The group of an item key: group 1 of ``group_pattern`` where it matches, else the key."""
        pattern = self.config.group_pattern
        match = re.search(pattern, key) if pattern else None
        return match.group(1) if match else key

    def load_item(self, item: Item) -> Iterator[Sample]:
        raise NotImplementedError

    # ---- shared machinery ---------------------------------------------------------------------
    def _info(self) -> datasets.DatasetInfo:
        # ``datasets`` calls this once the user's overrides are set and before anything reads
        # the options (``source`` is cached from here on): check and normalise them first
        self.config.validate()
        src = self.source
        return datasets.DatasetInfo(
            description=src.description,
            citation=src.citation,
            homepage=src.homepage,
            license=src.license,
            features=GROUNDING_FEATURES,
        )

    @property
    def manual_download_instructions(self) -> str:
        return self.MANUAL_DOWNLOAD_INSTRUCTIONS

    def data_path(self) -> Path:
        """The user's copy of the corpus: it must exist and hold something. A URL gives a
        ``UPath`` (the same calls over fsspec, see :mod:`medground_hf.storage`)."""
        if not self.config.data_dir:
            raise InputError(
                None, f"{self.name}: no data dir given.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        if storage.is_url(self.config.data_dir) and self.URL_REFUSAL:
            raise InputError(
                self.config.data_dir,
                f"{self.name} cannot read a URL --data-dir: {self.URL_REFUSAL}",
            )
        path = storage.path(self.config.data_dir)
        with storage.errors(path, "cannot list the data dir"):
            if not path.is_dir():
                raise InputError(path, "data dir does not exist or is not a folder")
            if not any(path.iterdir()):
                raise InputError(path, "data dir is empty")
        return path

    def split_items(self) -> dict[str, list[Item]]:
        """Items per split, group-aware and deterministic (see :mod:`medground_hf.splits`)."""
        data_dir = self.data_path()
        items = self.list_items(data_dir)
        if not items:
            raise InputError(
                data_dir,
                f"no {self.source.title} items found.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}",
            )
        option = (
            LABEL_DISPLAY_OPTION
            if isinstance(self.config, LabelOptions)
            else f"the display of the {{name}} LabelSpec in the {self.name} builder"
        )
        try:
            check_display_names(self.source.labels, option)
        except ValueError as exc:
            raise InputError(None, str(exc)) from None
        items = self.mark_shared_keys(items)
        by_split: dict[str, list[Item]] = {}
        for item in items:
            split = assign_split(
                item.group, self.config.split_ratios, source_split=item.source_split
            )
            by_split.setdefault(split, []).append(item)
        empty = [name for name in self.config.split_ratios if name not in by_split]
        if empty and not any(item.source_split for item in items):
            groups = len({item.group for item in items})
            logger.warning(
                "%d group(s): split(s) %s received none. Each group is placed by its hash alone "
                "(so re-runs and later versions never move it); with few groups the ratios hold "
                "only on average.",
                groups,
                empty,
            )
        return by_split

    def mark_shared_keys(self, items: list[Item]) -> list[Item]:
        """Items sharing one key (``a.png`` and ``a.jpg``) cannot be told apart: an error naming
        the files, or with ``--on-error skip`` every one of them skipped with that reason."""
        by_key: dict[str, list[Item]] = defaultdict(list)
        for item in items:
            by_key[item.key].append(item)
        shared = {key: group for key, group in by_key.items() if len(group) > 1}
        if not shared:
            return items
        if self.config.on_error == "raise":
            key, group = next(iter(shared.items()))
            raise InputError(
                group[0].files[0] if group[0].files else None,
                f"has the same item key {key!r} as {', '.join(g.files[0] for g in group[1:])}; "
                "rename one of them (or use --on-error skip to skip all of them)",
            )
        marked = []
        for item in items:
            group = shared.get(item.key)
            if group is not None:
                others = ", ".join(g.files[0] for g in group if g is not item)
                problem = f"has the same item key {item.key!r} as {others}"
                item = replace(item, extra=(*item.extra, ("error", problem)))
            marked.append(item)
        return marked

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        self.items_by_split = self.split_items()
        total = sum(len(items) for items in self.items_by_split.values())
        self._items_bar = ProcessBar("items", total, "item")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"items": items, "split": split})
            for split, items in self.items_by_split.items()
        ]

    def _generate_examples(self, items: list[Item], split: str):
        report = SkipReport(self.config.report_dir)
        folder = self.config.checkpoint_dir
        checkpoints = ItemCheckpoints(folder) if folder else None
        resuming = checkpoints is not None and len(checkpoints) > 0
        for item in items:
            key = item_key(item.key, item.files) if checkpoints is not None else ""
            done = checkpoints.get(key) if checkpoints is not None else None
            if done is not None:
                built, skips = done
                report.extend(skips)
            else:
                built, skips = self.item_records(item, split, report)
                if checkpoints is not None:
                    checkpoints.add(key, built, skips)
                    fault("item")
            self._items_bar.update()
            for record in built:
                yield record["id"], record
        if checkpoints is not None:
            checkpoints.flush()
            if resuming:
                logger.info(
                    "split %s: %d item(s) taken from the interrupted run, %d read",
                    split,
                    checkpoints.resumed,
                    len(items) - checkpoints.resumed,
                )

    def item_records(
        self, item: Item, split: str, report: SkipReport
    ) -> tuple[list[dict], list[dict]]:
        """The records of one item and the skip-report entries it caused (an item skipped under
        ``--on-error skip`` has no records and one ``input`` entry)."""
        src = self.source
        skips: list[dict] = []
        try:
            problem = dict(item.extra).get("error")
            if problem:
                raise InputError(item.files[0] if item.files else None, problem)
            built = []
            for sample in self.load_item(item):
                sample.split = split
                records, dropped = sample_to_records(
                    sample,
                    src,
                    builder=self.name,
                    builder_version=str(self.VERSION),
                    config_name=self.config.name,
                )
                built.extend(records)
                for d in dropped:
                    skips.append(
                        report.add(
                            d.image_id,
                            None,
                            "min_size",
                            f"{d.label} component of {d.area_px} px below min_size",
                            level=logging.DEBUG,
                        )
                    )
            if not built:
                raise InputError(
                    item.files[-1] if item.files else None,
                    "no target of at least min_size pixels in any mask",
                )
        except InputError as error:
            if self.config.on_error == "raise":
                raise
            skips.append(report.add(item.key, error.path, "input", error.problem))
            return [], skips
        return built, skips
