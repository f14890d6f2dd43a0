"""Volume intensities to 8-bit grey: one window per volume, so every slice of a case matches.

MR has no absolute scale (and is often z-scored, so negative), so its window is a pair of
percentiles of the *foreground*: a constant background that fills a large share of the volume
(zeros around a skull-stripped brain, the minimum of a z-scored one) is left out first, otherwise
it drags the low percentile onto itself. CT is in Hounsfield units, so it gets a fixed clinical
preset (level/width) chosen per source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (level, width) in HU of the usual clinical display windows.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
DEFAULT_PERCENTILES = (0.5, 99.5)
# A single value holding more than this share of the voxels is background, not tissue.
BACKGROUND_SHARE = 0.05
# Percentiles are taken on at most about this many voxels (a regular stride, so deterministic).
SAMPLE_VOXELS = 2_000_000


@dataclass(frozen=True)
class Window:
    """Intensities ``low`` and below map to 0, ``high`` and above to 255, linear in between."""

    low: float
    high: float
    method: str

    def apply(self, values: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(values, dtype=np.float32) - self.low) * (
            255.0 / (self.high - self.low)
        )
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def ct_window(preset: str) -> Window:
    """The HU window of a named preset (see :data:`CT_PRESETS`)."""
    if preset not in CT_PRESETS:
        raise ValueError(f"unknown CT window preset {preset!r}; known: {sorted(CT_PRESETS)}")
    level, width = CT_PRESETS[preset]
    return Window(level - width / 2, level + width / 2, f"ct:{preset}")


def sample_voxels(volume: np.ndarray, limit: int = SAMPLE_VOXELS) -> np.ndarray:
    """About ``limit`` voxels taken at a regular stride (deterministic, cheap on big volumes)."""
    volume = np.asarray(volume)
    step = max(1, volume.size // limit)
    # picked through .flat (C order): a reoriented (flipped, transposed) view is never copied
    return volume.flat[np.arange(0, volume.size, step)]


def background_value(sample: np.ndarray) -> float | None:
    """The one value that fills more than :data:`BACKGROUND_SHARE` of the voxels, if any."""
    values, counts = np.unique(sample, return_counts=True)
    top = int(np.argmax(counts))
    return float(values[top]) if counts[top] > BACKGROUND_SHARE * sample.size else None


def percentile_window(
    volume: np.ndarray,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    foreground: np.ndarray | None = None,
) -> Window:
    """Robust MR window: percentiles of the foreground (a given mask, else non-background voxels).

    A volume that is constant (or whose foreground is) gets a window one unit wide starting at that
    value, so it renders black instead of dividing by zero.
    """
    lo_pct, hi_pct = percentiles
    if not 0 <= lo_pct < hi_pct <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    if foreground is not None and foreground.any():
        values = sample_voxels(volume[foreground])
    else:
        values = sample_voxels(volume)
        background = background_value(values)
        if background is not None and np.any(values != background):
            values = values[values != background]
    low, high = (float(v) for v in np.percentile(values, [lo_pct, hi_pct]))
    if high <= low:
        high = low + 1.0
    return Window(low, high, f"percentile:{lo_pct:g}-{hi_pct:g}")


def window_for(
    volume: np.ndarray,
    *,
    ct_preset: str | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    foreground: np.ndarray | None = None,
) -> Window:
    """CT volumes get their HU preset; everything else the robust percentile window."""
    if ct_preset:
        return ct_window(ct_preset)
    return percentile_window(volume, percentiles, foreground=foreground)
