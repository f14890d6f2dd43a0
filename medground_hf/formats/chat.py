"""Chat dialects: one canonical row with kept queries -> training rows in each trainer's format.

A dialect is two choices: how a box is written in text (its convention from ``boxes`` and its
answer template; the README's "Chat dialects" table) and the row layout its trainer reads
(``Layout``). Tasks:

``ground``        query -> box (referring grounding), for targets that are the only candidate
``disambiguate``  query -> box when the image holds several candidates of the same label; the
                  prompt says how many, so the query has to single one out
``describe``      box -> query (region description)

Every row carries ``id`` (the canonical record id), ``task``, ``width`` and ``height`` so an
answer can be converted back to canonical pixels and traced to its source image and mask.
Reading a model's answer back is the evaluation's job (:mod:`medground_hf.evaluation.answers`,
one parser for every dialect and free form).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from medground_hf import boxes
from medground_hf.record import kept_queries
from medground_hf.schema import IMAGE, features

if TYPE_CHECKING:
    from datasets import Features

GROUND = "Locate {q} and give its bounding box."
DISAMBIGUATE = (
    "This image contains {n} regions labelled {label}. Locate only the one described as "
    "{q} and give its bounding box."
)
DESCRIBE = "Describe the region {box}."
TASKS = ("ground", "disambiguate", "describe")
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Turn:
    """One single-turn sample before it is laid out: prompt, answer and ms-swift objects."""

    task: str
    query: str
    prompt: str
    answer: str
    objects: dict | None = None


# ---- layouts: how (image, prompt, answer) becomes a row ---------------------------------------
COMMON = {
    "id": "string",
    "task": "string",
    "width": "int32",
    "height": "int32",
}
FROM_VALUE = [{"from": "string", "value": "string"}]


@dataclass(frozen=True)
class Layout:
    """A trainer's row shape: its columns (a :mod:`medground_hf.schema` spec) and a function
    building one row."""

    name: str
    fields: dict
    build: Callable[[object, Turn], dict]
    image_list: bool  # images as a list (``images``) rather than one ``image``

    def features(self) -> Features:
        image = [IMAGE] if self.image_list else IMAGE
        key = "images" if self.image_list else "image"
        return features({**COMMON, key: image, **self.fields})


def _conversations(image, turn: Turn) -> dict:
    return {
        "image": image,
        "conversations": [
            {"from": "human", "value": f"{IMAGE_TOKEN}\n{turn.prompt}"},
            {"from": "gpt", "value": turn.answer},
        ],
    }


def _sharegpt(image, turn: Turn) -> dict:
    row = _conversations(image, turn)
    return {"images": [row.pop("image")], **row}


def _trl(image, turn: Turn) -> dict:
    """TRL's vision ``messages``: an image part ``{"type": "image"}`` (the ``images`` column holds
    the image) then the text part. In Parquet the image part gets ``text: null`` (one struct
    type per list); the JSON export writes it as TRL documents it."""
    return {
        "images": [image],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": turn.prompt}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": turn.answer}]},
        ],
    }


def _prefix_suffix(image, turn: Turn) -> dict:
    return {"image": image, "prefix": turn.prompt, "suffix": turn.answer}


def _swift(image, turn: Turn) -> dict:
    return {
        "images": [image],
        "messages": [
            {"role": "user", "content": f"{IMAGE_TOKEN}{turn.prompt}"},
            {"role": "assistant", "content": turn.answer},
        ],
        "objects": turn.objects,
    }


CONVERSATIONS = Layout("conversations", {"conversations": FROM_VALUE}, _conversations, False)
SHAREGPT = Layout("sharegpt", {"conversations": FROM_VALUE}, _sharegpt, True)
TRL = Layout(
    "trl",
    {
        "messages": [
            {
                "role": "string",
                "content": [{"type": "string", "text": "string"}],
            }
        ]
    },
    _trl,
    True,
)
PREFIX_SUFFIX = Layout(
    "prefix-suffix", {"prefix": "string", "suffix": "string"}, _prefix_suffix, False
)
SWIFT = Layout(
    "ms-swift",
    {
        "messages": [{"role": "string", "content": "string"}],
        "objects": {
            "ref": ["string"],
            "bbox": [["float32"]],
            "bbox_type": "string",
        },
    },
    _swift,
    True,
)


# ---- dialects: how a box and an answer are written -----------------------------------------------
@dataclass(frozen=True)
class Dialect:
    """Numbers in brackets, ``[x1, y1, x2, y2]``; subclasses change the text around them."""

    name: str
    convention: str
    layout: Layout
    decimals: int | None = None  # None: integers
    json_ext: str = "json"  # what the trainer reads: a JSON list or JSON lines
    resize: boxes.SmartResize = boxes.QWEN25_RESIZE  # the ``qwen25`` convention's resize rule

    @property
    def config(self) -> str:
        return f"chat-{self.name}"

    def coords(self, box, width: int, height: int) -> list:
        values = boxes.convert(box, self.convention, width, height, self.resize)
        if self.decimals is None:
            return [int(round(v)) for v in values]
        return [round(float(v), self.decimals) for v in values]

    def fmt(self, value) -> str:
        return str(value) if self.decimals is None else f"{value:.{self.decimals}f}"

    def box_text(self, coords: list) -> str:
        return "[" + ", ".join(self.fmt(v) for v in coords) + "]"

    def answer(self, query: str, label: str, coords: list) -> str:
        return self.box_text(coords)

    def ground_prompt(self, query: str, label: str, candidates: int) -> str:
        if candidates > 1:
            return DISAMBIGUATE.format(q=query, n=candidates, label=label)
        return GROUND.format(q=query)

    def describe_prompt(self, coords: list) -> str:
        return DESCRIBE.format(box=self.box_text(coords))

    def turns(self, row: dict) -> Iterator[Turn]:
        """The samples of one canonical row: a referring and a describing turn per kept query."""
        coords = self.coords(row["bbox_xyxy"], row["width"], row["height"])
        label = row["label_display"] or row["label"]
        candidates = row["num_candidates"] or 1
        task = "disambiguate" if candidates > 1 else "ground"
        for query in kept_queries(row):
            q = query["text"]
            prompt = self.ground_prompt(q, label, candidates)
            yield Turn(task, q, prompt, self.answer(q, label, coords))
            yield Turn("describe", q, self.describe_prompt(coords), q)

    def rows(self, row: dict, image) -> Iterator[dict]:
        """Laid-out rows of one canonical row; ``image`` is the bytes dict or an export path."""
        size = {"width": row["width"], "height": row["height"]}
        for turn in self.turns(row):
            yield {"id": row["id"], "task": turn.task, **size, **self.layout.build(image, turn)}

    def max_error_px(self, width: int, height: int) -> float:
        """Round-trip error bound of the written box (decimals quantize like the convention)."""
        if self.decimals is not None:
            return max(width, height) / (2 * 10**self.decimals) + 0.5
        return boxes.max_error_px(self.convention, width, height, self.resize)


@dataclass(frozen=True)
class QwenRefDialect(Dialect):
    """Qwen2-VL: the query in ``<|object_ref_start|>``/``<|object_ref_end|>``, then
    ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>``."""

    def box_text(self, coords: list) -> str:
        x1, y1, x2, y2 = coords
        return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"

    def answer(self, query: str, label: str, coords: list) -> str:
        return f"<|object_ref_start|>{query}<|object_ref_end|>{self.box_text(coords)}"


@dataclass(frozen=True)
class JsonDialect(Dialect):
    """Qwen2.5-VL / Qwen3-VL: a fenced JSON list of ``{"bbox_2d": [...], "label": ...}``."""

    def answer(self, query: str, label: str, coords: list) -> str:
        payload = json.dumps([{"bbox_2d": coords, "label": label}], ensure_ascii=False)
        return f"```json\n{payload}\n```"

    def ground_prompt(self, query: str, label: str, candidates: int) -> str:
        return super().ground_prompt(query, label, candidates) + " Output it in JSON format."


@dataclass(frozen=True)
class InternVLDialect(Dialect):
    """InternVL: ``<ref>q</ref><box>[[x1, y1, x2, y2]]</box>`` with its own grounding prompts."""

    def box_text(self, coords: list) -> str:
        return f"<box>[{super().box_text(coords)}]</box>"

    def answer(self, query: str, label: str, coords: list) -> str:
        return f"<ref>{query}</ref>{self.box_text(coords)}"

    def ground_prompt(self, query: str, label: str, candidates: int) -> str:
        lead = "Please provide the bounding box coordinate of the region this sentence describes"
        if candidates > 1:
            lead = f"This image contains {candidates} regions labelled {label}. {lead}"
        return f"{lead}: <ref>{query}</ref>"

    def describe_prompt(self, coords: list) -> str:
        return f"Please provide a short description for this region: {self.box_text(coords)}"


@dataclass(frozen=True)
class FlorenceDialect(Dialect):
    """Florence-2: task-token prefix, answer ``q<loc_x1><loc_y1><loc_x2><loc_y2>``."""

    def box_text(self, coords: list) -> str:
        return "".join(f"<loc_{v}>" for v in coords)

    def answer(self, query: str, label: str, coords: list) -> str:
        return f"{query}{self.box_text(coords)}"

    def ground_prompt(self, query: str, label: str, candidates: int) -> str:
        """Florence-2 takes only its task token and the phrase: the query must disambiguate."""
        return f"<CAPTION_TO_PHRASE_GROUNDING>{query}"

    def describe_prompt(self, coords: list) -> str:
        return f"<REGION_TO_DESCRIPTION>{self.box_text(coords)}"


@dataclass(frozen=True)
class SwiftDialect(Dialect):
    """ms-swift grounding: ``<ref-object>``/``<bbox>`` placeholders filled from ``objects``."""

    def turns(self, row: dict) -> Iterator[Turn]:
        coords = self.coords(row["bbox_xyxy"], row["width"], row["height"])
        for turn in super().turns(row):
            objects = {"ref": [turn.query], "bbox": [coords], "bbox_type": "real"}
            if turn.task == "describe":
                prompt, answer = DESCRIBE.format(box="<bbox>"), "<ref-object>"
            else:
                prompt, answer = turn.prompt.replace(turn.query, "<ref-object>", 1), "<bbox>"
            yield replace(turn, prompt=prompt, answer=answer, objects=objects)


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("llava", "norm", CONVERSATIONS, decimals=3),
        Dialect("sharegpt", "norm1000", SHAREGPT),
        Dialect("trl", "norm1000", TRL, json_ext="jsonl"),
        QwenRefDialect("qwen2-vl", "norm1000", CONVERSATIONS),
        JsonDialect("qwen2.5-vl", "qwen25", CONVERSATIONS),
        JsonDialect("qwen3-vl", "norm1000", CONVERSATIONS),
        InternVLDialect("internvl", "norm1000", CONVERSATIONS, json_ext="jsonl"),
        FlorenceDialect("florence-2", "florence", PREFIX_SUFFIX, json_ext="jsonl"),
        SwiftDialect("ms-swift", "real", SWIFT, json_ext="jsonl"),
    )
}


def get_dialect(
    name: str, resize: boxes.SmartResize | None = None, *, square: bool = False
) -> Dialect:
    """A dialect by name; ``resize`` replaces the default Qwen2.5-VL resize rule (only the
    ``qwen25`` convention uses it), for training runs that set other ``min_pixels``/
    ``max_pixels``; ``square`` writes llava's 0-1 boxes on the image padded to a square, for
    LLaVA-1.5 models trained with ``image_aspect_ratio: pad``."""
    try:
        dialect = DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown chat dialect {name!r} (known: {', '.join(DIALECTS)})") from None
    if square:
        if dialect.convention != "norm":
            raise ValueError(f"{name}: the padded square applies to llava (0-1 boxes) only")
        dialect = replace(dialect, convention="norm_square")
    if resize is None or resize == dialect.resize:
        return dialect
    if dialect.convention != "qwen25":
        raise ValueError(f"{name}: min/max pixels only apply to qwen2.5-vl (absolute pixels)")
    return replace(dialect, resize=resize)
