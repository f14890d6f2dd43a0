"""Grounding evaluation: parse model answers, score them against a built folder, baselines.

The options the command line offers are plain constants here; the scoring code (NumPy, Arrow) is
imported when first used, so ``medground --help`` does not load it.
"""

KINDS = ("whole-image", "center-prior", "oracle")  # the baselines :func:`write_baseline` writes
MIN_COVERAGE = 0.9  # share of the evaluated targets the predictions must answer before a warning

__all__ = ["KINDS", "MIN_COVERAGE", "evaluate", "write_baseline"]


def __getattr__(name: str):
    if name == "evaluate":
        from .scoring import evaluate

        return evaluate
    if name == "write_baseline":
        from .baselines import write_baseline

        return write_baseline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
