"""medground-hf: verified referring-grounding data from medical segmentation corpora."""

import os

__version__ = "0.1.0"
PIPELINE_VERSION = __version__

# Arrow's allocator, chosen before pyarrow is first imported (the user's choice wins): jemalloc
# gives freed memory back to the system, where the default (mimalloc) keeps what large,
# short-lived buffers (decoded images, chunk tables) once took, so memory would creep up with
# the corpus instead of staying flat.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
