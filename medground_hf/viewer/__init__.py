"""A static HTML gallery of a built dataset folder (``medground view``)."""

from .gallery import write_gallery

__all__ = ["write_gallery"]
