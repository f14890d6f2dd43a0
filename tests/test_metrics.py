"""Metrics on constructed boxes whose IoUs are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medground_hf.evaluation import metrics

NAN = [np.nan] * 4


def test_iou_hand_computed():
    pred = np.array(
        [
            [0, 0, 10, 10],  # vs [5,5,15,15]: inter 5*5 = 25, union 100 + 100 - 25 = 175
            [0, 0, 10, 10],  # vs [0,0,10,20]: inter 100, union 200
            [0, 0, 10, 10],  # identical
            [0, 0, 10, 10],  # touching edge: exclusive max, no shared pixel
            [0, 0, 10, 10],  # disjoint
            NAN,  # no prediction
            [2, 2, 4, 4],  # inside [0,0,8,8]: 4 / 64
        ],
        dtype=float,
    )
    gt = np.array(
        [
            [5, 5, 15, 15],
            [0, 0, 10, 20],
            [0, 0, 10, 10],
            [10, 0, 20, 10],
            [50, 50, 60, 60],
            [0, 0, 10, 10],
            [0, 0, 8, 8],
        ],
        dtype=float,
    )
    assert metrics.iou(pred, gt).tolist() == pytest.approx([1 / 7, 0.5, 1, 0, 0, 0, 1 / 16])


def test_mirror_flips_in_pixel_edges():
    mirrored = metrics.mirror_x(np.array([[10, 20, 30, 40], [0, 0, 100, 5]]), np.array([100, 100]))
    assert mirrored.tolist() == [[70, 20, 90, 40], [0, 0, 100, 5]]


def test_summarize_known_values():
    # IoUs 1, 0.5 (counts at 0.5: >=), 0.4, 0 (parse failure), 0 (missing), 0 (mirror hit)
    ious = np.array([1.0, 0.5, 0.4, 0.0, 0.0, 0.0])
    mirror = np.array([1.0, 0.5, 0.1, 0.0, 0.0, 0.8])
    status = np.array(["ok", "ok", "ok", "parse_failure", "missing", "ok"], dtype=object)
    s = metrics.summarize(ious, mirror, status)
    assert s["n"] == 6
    assert s["acc@0.3"] == pytest.approx(3 / 6)
    assert s["acc@0.5"] == pytest.approx(2 / 6)
    assert s["acc@0.7"] == pytest.approx(1 / 6)
    assert s["miou"] == pytest.approx(1.9 / 6)
    assert (s["parse_failures"], s["missing"]) == (1, 1)
    assert s["parse_failure_rate"] == pytest.approx(1 / 5)  # over the 5 answers received
    assert s["missing_rate"] == pytest.approx(1 / 6)
    # the first two hit the mirror too but also the truth: not mirror errors
    assert s["mirror_errors"] == 1
    assert s["mirror_error_rate"] == pytest.approx(1 / 6)


def test_breakdown_by_key():
    ious = np.array([1.0, 0.0, 0.6, 0.2])
    status = np.array(["ok"] * 4, dtype=object)
    groups = metrics.breakdown(np.array(["b", "a", "b", "a"], dtype=object), ious, ious, status)
    assert list(groups) == ["a", "b"]
    assert groups["a"]["n"] == 2 and groups["a"]["acc@0.5"] == 0.0
    assert groups["a"]["miou"] == pytest.approx(0.1)
    assert groups["b"]["acc@0.5"] == 1.0 and groups["b"]["acc@0.7"] == 0.5


def test_empty_set_has_zero_metrics():
    empty = np.zeros(0)
    s = metrics.summarize(empty, empty, np.zeros(0, dtype=object))
    assert s["n"] == 0 and s["miou"] == 0.0 and s["parse_failure_rate"] == 0.0
