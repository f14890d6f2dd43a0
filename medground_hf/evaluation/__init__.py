"""Grounding evaluation: parse model answers, score them against a built folder, baselines."""

from .baselines import KINDS, write_baseline
from .evaluate import evaluate

__all__ = ["KINDS", "evaluate", "write_baseline"]
