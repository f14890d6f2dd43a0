"""Box conventions: processor rules on known sizes, and round trips on random boxes and images."""

from __future__ import annotations

import numpy as np
import pytest

from medground_hf import boxes
from medground_hf.evaluation.answers import parse_answer

ROUND_TRIPS = ("real", "coco", "norm", "norm1000", "qwen25", "florence")


def random_cases(seed: int, n: int):
    """Random image sizes (aspect <= 50) and boxes, a third of them touching the image edges."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        width = int(rng.integers(2, 4097))
        height = int(np.clip(width * rng.uniform(0.1, 10), 2, 8192))
        x0, x1 = sorted(rng.choice(width + 1, size=2, replace=False).tolist())
        y0, y1 = sorted(rng.choice(height + 1, size=2, replace=False).tolist())
        edge = rng.integers(0, 3)
        if edge == 1:
            x0, y0 = 0, 0
        elif edge == 2:
            x1, y1 = width, height
        yield width, height, [int(x0), int(y0), int(x1), int(y1)]


@pytest.mark.parametrize("convention", ROUND_TRIPS)
def test_round_trip_error_is_bounded(convention):
    worst = 0.0
    for width, height, box in random_cases(seed=ROUND_TRIPS.index(convention), n=3000):
        value = boxes.convert(box, convention, width, height)
        back = boxes.to_canonical(value, convention, width, height)
        boxes.check_canonical(back, width, height)
        err = float(np.max(np.abs(np.subtract(back, box))))
        bound = boxes.max_error_px(convention, width, height)
        assert err <= bound, (convention, width, height, box, value, back)
        worst = max(worst, err / max(bound, 1e-9))
    if convention in ("real", "coco", "norm"):
        assert worst == 0.0
    else:  # the bound is not vacuous: random boxes come close to it
        assert worst > 0.3


def test_full_image_and_single_pixel_boxes_survive_every_convention():
    for width, height in [(2, 2), (256, 256), (800, 540), (1, 3), (4096, 21)]:
        for box in ([0, 0, width, height], [width - 1, height - 1, width, height], [0, 0, 1, 1]):
            for convention in ROUND_TRIPS:
                value = boxes.convert(box, convention, width, height)
                back = boxes.to_canonical(value, convention, width, height)
                boxes.check_canonical(back, width, height)
                bound = boxes.max_error_px(convention, width, height)
                assert np.max(np.abs(np.subtract(back, box))) <= bound


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (256, 256, (252, 252)),  # round to the nearest multiple of 28
        (540, 800, (532, 812)),  # HC18 size
        (14, 14, (56, 56)),  # below min_pixels: scaled up, ceil
        (10, 1000, (28, 560)),  # a side rounding to 0 still takes the min_pixels branch
        (42, 42, (56, 56)),  # round half to even: 1.5 -> 2
        (70, 70, (56, 56)),  # 2.5 -> 2 (banker's rounding, as Python's round in transformers)
    ],
)
def test_smart_resize_known_sizes(height, width, expected):
    assert boxes.SmartResize()(height, width) == expected


def test_smart_resize_respects_the_pixel_budget():
    rng = np.random.default_rng(7)
    resize = boxes.SmartResize(max_pixels=28 * 28 * 1280)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(28, 6000, size=2))
        if max(h, w) / min(h, w) > 200:
            continue
        rh, rw = resize(h, w)
        assert rh % 28 == 0 and rw % 28 == 0
        assert resize.min_pixels <= rh * rw <= resize.max_pixels
    with pytest.raises(ValueError, match="aspect ratio"):
        resize(10, 2500)


def test_qwen25_depends_on_the_configured_max_pixels():
    box = [100, 100, 2000, 1500]
    default = boxes.to_qwen25(box, 4000, 3000)
    capped = boxes.SmartResize(max_pixels=1024 * 28 * 28)
    small = boxes.to_qwen25(box, 4000, 3000, capped)
    assert small[2] < default[2]
    assert boxes.from_qwen25(small, 4000, 3000, capped) == pytest.approx(box, abs=4)
    # the dispatchers take the same rule (what the dialect, export and eval pass on)
    assert boxes.convert(box, "qwen25", 4000, 3000, capped) == small
    assert boxes.to_canonical(small, "qwen25", 4000, 3000, capped) == boxes.from_qwen25(
        small, 4000, 3000, capped
    )
    assert boxes.convert(box, "norm1000", 4000, 3000, capped) == boxes.to_norm1000(box, 4000, 3000)


def test_florence_matches_the_box_quantizer():
    # size_per_bin = 1; floor, then clamp to 999; dequantize to the bin centre
    assert boxes.to_florence_bins([0, 10, 999, 1000], 1000, 1000) == [0, 10, 999, 999]
    assert boxes.to_florence([0, 0, 256, 128], 256, 256) == "<loc_0><loc_0><loc_999><loc_500>"
    # read back as the evaluation reads a Florence-2 answer
    answer = "a<loc_0><loc_0><loc_999><loc_500>"
    assert parse_answer(answer, "florence", 256, 256).box == [0, 0, 256, 128]
    with pytest.raises(ValueError, match="only 2 <loc_N> tokens, a box needs 4"):
        parse_answer("<loc_1><loc_2>", "florence", 10, 10)


def test_bad_boxes_are_refused():
    with pytest.raises(ValueError, match="inside a 10x10"):
        boxes.convert([0, 0, 11, 5], "norm", 10, 10)
    with pytest.raises(ValueError, match="4 integers"):
        boxes.check_canonical([0.5, 0, 3, 3], 10, 10)
    with pytest.raises(KeyError, match="unknown box convention"):
        boxes.convert([0, 0, 3, 3], "yolo", 10, 10)
    # out-of-image predictions are clipped, never published outside the image
    assert boxes.to_canonical([-5, -5, 50, 50], "real", 10, 10) == [0, 0, 10, 10]
