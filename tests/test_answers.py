"""Answer parsing: every dialect's answer text, free forms, and malformed answers."""

from __future__ import annotations

import pytest

from medground_hf import boxes
from medground_hf.evaluation.answers import (
    DIALECT_CONVENTIONS,
    ParseFailure,
    convention_for,
    find_box,
    parse_answer,
)

# a query with numbers and brackets in it must not be mistaken for the box
QUERY = "the 2nd of 3 polyps (about 10 mm) at the image's left"
SIZES = [(256, 256), (800, 540), (1920, 1080), (333, 517)]
BOX_CASES = [
    [0, 0, 1, 1],
    [10, 20, 30, 40],
    [3, 7, 250, 255],
    [0, 0, 256, 256],
]


def scaled(box, width, height):
    """The 256 x 256 case boxes scaled into another image size (still valid canonical boxes)."""
    x0, y0, x1, y1 = box
    sx, sy = width / 256, height / 256
    out = [int(x0 * sx), int(y0 * sy), max(int(x1 * sx), int(x0 * sx) + 1)]
    out.append(max(int(y1 * sy), int(y0 * sy) + 1))
    return out


@pytest.mark.parametrize("dialect", sorted(DIALECT_CONVENTIONS))
@pytest.mark.parametrize("size", SIZES)
def test_every_dialect_round_trips_within_its_error_bound(dialect, size, write_dialect_answer):
    width, height = size
    convention = convention_for(f"chat-{dialect}")
    for case in BOX_CASES:
        box = scaled(case, width, height)
        text = write_dialect_answer(dialect, box, width, height, QUERY, "polyp")
        parsed = parse_answer(text, convention, width, height)
        bound = boxes.max_error_px("norm" if convention == "real" else convention, width, height)
        if dialect == "llava":  # three decimals quantize like a 1000-step grid
            bound = max(width, height) / 2000 + 0.5
        errors = [abs(a - b) for a, b in zip(parsed.box, box, strict=True)]
        assert max(errors) <= bound, (dialect, size, box, text, parsed.box)
        assert not parsed.out_of_range
        boxes.check_canonical(parsed.box, width, height)


@pytest.mark.parametrize(
    ("text", "form", "numbers"),
    [
        (
            '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "polyp"}]\n```',
            "json",
            [10, 20, 30, 40],
        ),
        ('[{"bbox_2d": [10.5, 20, 30, 40]}]', "json", [10.5, 20, 30, 40]),
        ('{"bbox": [[1, 2, 3, 4]], "bbox_type": "real"}', "json", [1, 2, 3, 4]),
        ('Sure! {"box": [5, 6, 7, 8]} is where it is', "list", [5, 6, 7, 8]),
        ('Sure! {"bbox_2d": [5, 6, 7, 8]} is where it is', "bbox_2d", [5, 6, 7, 8]),
        # truncated JSON (a model ran out of tokens) is still read by the free pattern
        ('```json\n[{"bbox_2d": [11, 22, 33, 44], "label": "po', "bbox_2d", [11, 22, 33, 44]),
        ("The polyp is at [0.1, 0.2, 0.3, 0.4].", "list", [0.1, 0.2, 0.3, 0.4]),
        ("[ 12 ,34,56 , 78 ]", "json", [12, 34, 56, 78]),
        ("It is [ 12 ,34,56 , 78 ] here", "list", [12, 34, 56, 78]),
        ("box: (12, 34), (56, 78)", "pairs", [12, 34, 56, 78]),
        ("(12,34)(56,78)", "pairs", [12, 34, 56, 78]),
        (
            "<|box_start|>(1,2),(3,4)<|box_end|><|box_start|>(5,6),(7,8)<|box_end|>",
            "qwen2-vl",
            [1, 2, 3, 4],
        ),
        (
            "<ref>a [1, 2] thing</ref><box>[[100, 200, 300, 400]]</box>",
            "internvl",
            [100, 200, 300, 400],
        ),
        ("polyp<loc_10><loc_20><loc_30><loc_40></s>", "florence", [10, 20, 30, 40]),
        # several boxes: the first one, in each form
        (
            "<box>[[100, 200, 300, 400], [500, 600, 700, 800]]</box>",
            "internvl",
            [100, 200, 300, 400],
        ),
        (
            '```json\n[{"bbox_2d": [1, 2, 3, 4], "label": "a"}, {"bbox_2d": [5, 6, 7, 8]}]\n```',
            "json",
            [1, 2, 3, 4],
        ),
        ("first [1, 2, 3, 4], then [5, 6, 7, 8]", "list", [1, 2, 3, 4]),
        ("(1,2),(3,4) and (5,6),(7,8)", "pairs", [1, 2, 3, 4]),
        # negative numbers (a box starting outside the image) in every numeric form
        ("<|box_start|>(-12,-3),(56,78)<|box_end|>", "qwen2-vl", [-12, -3, 56, 78]),
        ("<box>[[-12, -3, 56, 78]]</box>", "internvl", [-12, -3, 56, 78]),
        ('{"bbox_2d": [-12, -3, 56, 78]}', "json", [-12, -3, 56, 78]),
        ("The box is [-12, -3.5, 56, 78] in pixels.", "list", [-12, -3.5, 56, 78]),
        ("(-12, -3), (56, 78)", "pairs", [-12, -3, 56, 78]),
        ("at [1e2, 2E1, 3.5e2, 400]", "list", [100, 20, 350, 400]),
    ],
)
def test_free_forms(text, form, numbers):
    found, found_form = find_box(text)
    assert found == pytest.approx(numbers)
    assert found_form == form


def test_a_box_below_one_quantization_step_is_a_pixel_not_a_failure():
    # a 1-pixel-wide target at x = 1 in a 1920-wide image: both edges round to 1 in 0-1000
    assert boxes.to_norm1000([1, 10, 2, 20], 1920, 1080)[0::2] == [1, 1]
    assert parse_answer("[1, 9, 1, 19]", "norm1000", 1920, 1080).box == [2, 10, 3, 21]
    assert parse_answer("[0.001, 0.5, 0.001, 0.6]", "norm", 1920, 1080).box[0::2] == [2, 3]


def test_loc_tokens_are_florence_bins_whatever_the_config():
    parsed = parse_answer("<loc_0><loc_0><loc_999><loc_999>", "norm1000", 200, 100)
    assert parsed.box == [0, 0, 200, 100]
    assert parsed.form == "florence"


@pytest.mark.parametrize(
    ("text", "convention", "reason"),
    [
        ("", "norm1000", "empty answer"),
        ("   \n", "norm1000", "empty answer"),
        ("I cannot find a polyp in this image.", "norm1000", "no box found"),
        ("[0.1, 0.2, 0.3]", "norm", "no box found"),
        ("(1, 2), (3)", "norm1000", "no box found"),
        ("<loc_1><loc_2>", "florence", "only 2 <loc_N> tokens"),
        ("[0.5, 0.5, 0.2, 0.9]", "norm", "not an ordered"),
        ("[100, 100, 90, 300]", "norm1000", "not an ordered"),
        ("[10, 10, 10, 30]", "real", "not an ordered, non-empty"),
        ("[10, 10, 0, 5]", "coco", "not an ordered"),
        ("[NaN, 1, 2, 3]", "norm1000", "not four finite numbers"),
        ('{"bbox_2d": [Infinity, 1, 2, 3]}', "norm1000", "not four finite numbers"),
    ],
)
def test_malformed_answers_fail_with_a_reason(text, convention, reason):
    with pytest.raises(ParseFailure, match=reason):
        parse_answer(text, convention, 256, 256)


def test_out_of_range_coordinates_are_clipped_and_flagged():
    parsed = parse_answer("[0.1, 0.2, 1.4, 0.9]", "norm", 100, 50)
    assert parsed.box == [10, 10, 100, 45]
    assert parsed.out_of_range
    # pixels written as if the answer were 0-1 floats: clipped to the whole image
    parsed = parse_answer("[120, 40, 300, 200]", "norm", 100, 50)
    assert parsed.box == [99, 49, 100, 50]
    assert parsed.out_of_range


def test_negative_coordinates_are_clipped_to_the_image_and_flagged():
    parsed = parse_answer("Here: <box>[[-20, 100, 500, 600]]</box>.", "norm1000", 200, 100)
    assert parsed.box == [0, 10, 100, 60]
    assert parsed.out_of_range


def test_qwen25_answers_in_relative_coordinates_are_flagged_not_rescaled():
    """A Qwen2.5-VL model must answer in pixels of the resized image; 0-1 fractions or 0-1000
    values are the model's error: scored as written, and counted so the report shows why."""
    width, height = 800, 540  # resized to 812 x 532
    fractions = parse_answer('[{"bbox_2d": [0.25, 0.25, 0.5, 0.5]}]', "qwen25", width, height)
    assert fractions.relative_suspected and not fractions.out_of_range
    assert fractions.box == [0, 0, 1, 1]  # not silently rescaled to the intended box
    thousandths = parse_answer('[{"bbox_2d": [250, 250, 900, 900]}]', "qwen25", width, height)
    assert thousandths.out_of_range and not thousandths.relative_suspected
    pixels = parse_answer('[{"bbox_2d": [203, 133, 406, 266]}]', "qwen25", width, height)
    assert not pixels.relative_suspected and not pixels.out_of_range
    # integers 0/1 in pixels are a real (tiny) box; fractions in a 0-1 dialect are expected
    assert not parse_answer("[0, 0, 1, 1]", "real", width, height).relative_suspected
    assert not parse_answer("[0.25, 0.25, 0.5, 0.5]", "norm", width, height).relative_suspected


def test_qwen25_uses_the_smart_resized_size():
    # 800 x 540 is resized to 812 x 532: x scales by 800/812, y by 540/532
    assert boxes.QWEN25_RESIZE(540, 800) == (532, 812)
    parsed = parse_answer('[{"bbox_2d": [203, 133, 406, 266]}]', "qwen25", 800, 540)
    assert parsed.box == [200, 135, 400, 270]


def test_configs_select_conventions():
    assert convention_for("grounding") == "real"
    assert convention_for("coco") == "coco"
    assert convention_for("chat-qwen2.5-vl") == "qwen25"
    assert convention_for("chat-florence-2") == "florence"
    assert convention_for("chat-llava", box_format="norm1000") == "norm1000"
    with pytest.raises(ValueError, match="unknown config 'chat-nope'"):
        convention_for("chat-nope")
    with pytest.raises(ValueError, match="unknown box format"):
        convention_for("grounding", box_format="pixels")
