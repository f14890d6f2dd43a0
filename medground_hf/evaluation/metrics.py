"""Grounding metrics on arrays of boxes: IoU, accuracy at IoU thresholds, mirror errors.

Boxes are canonical ``[x1, y1, x2, y2]`` pixel edges (exclusive max), so a box's area is
``(x2 - x1) * (y2 - y1)``. A prediction that is missing or failed to parse is a row of NaN and
scores IoU 0: every metric is over all targets, not only over answers that parsed.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (0.3, 0.5, 0.7)
MIRROR_THRESHOLD = 0.5
# status of a scored item
OK, PARSE_FAILURE, MISSING = "ok", "parse_failure", "missing"


def iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` box arrays; rows with NaN (no prediction) give 0."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    ix = np.minimum(pred[:, 2], gt[:, 2]) - np.maximum(pred[:, 0], gt[:, 0])
    iy = np.minimum(pred[:, 3], gt[:, 3]) - np.maximum(pred[:, 1], gt[:, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = area_p + area_g - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / union
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def mirror_x(boxes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Boxes flipped left-right in their images: ``x -> width - x``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    widths = np.asarray(widths, dtype=np.float64)
    return np.stack([widths - boxes[:, 2], boxes[:, 1], widths - boxes[:, 0], boxes[:, 3]], axis=1)


def summarize(ious: np.ndarray, mirror_ious: np.ndarray, status: np.ndarray) -> dict:
    """Metrics of one set of scored items.

    ``parse_failure_rate`` is over the answers received (``n - missing``); ``missing_rate``,
    accuracies, mIoU and ``mirror_error_rate`` are over all ``n`` items. A mirror error is a
    prediction with IoU >= 0.5 against the left-right mirrored target and < 0.5 against the
    true one.
    """
    n = int(len(ious))
    missing = int(np.count_nonzero(status == MISSING))
    failures = int(np.count_nonzero(status == PARSE_FAILURE))
    mirror = int(np.count_nonzero((mirror_ious >= MIRROR_THRESHOLD) & (ious < MIRROR_THRESHOLD)))
    answered = n - missing
    out: dict = {"n": n}
    for t in THRESHOLDS:
        out[f"acc@{t}"] = float(np.count_nonzero(ious >= t) / n) if n else 0.0
    out.update(
        miou=float(ious.mean()) if n else 0.0,
        parse_failures=failures,
        parse_failure_rate=failures / answered if answered else 0.0,
        missing=missing,
        missing_rate=missing / n if n else 0.0,
        mirror_errors=mirror,
        mirror_error_rate=mirror / n if n else 0.0,
    )
    return out


def breakdown(
    keys: np.ndarray, ious: np.ndarray, mirror_ious: np.ndarray, status: np.ndarray
) -> dict[str, dict]:
    """:func:`summarize` per distinct key (e.g. per source), keys sorted."""
    keys = np.asarray(keys, dtype=object)
    return {
        str(key): summarize(ious[keys == key], mirror_ious[keys == key], status[keys == key])
        for key in sorted(set(keys.tolist()), key=str)
    }
