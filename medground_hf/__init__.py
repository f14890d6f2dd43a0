"""medground-hf: verified referring-grounding data from medical segmentation corpora."""

__version__ = "0.1.0"
PIPELINE_VERSION = __version__
