"""Dataset card rendering: YAML metadata the Hub accepts plus a body generated from the manifest."""

from .render import card_metadata, render_card

__all__ = ["card_metadata", "render_card"]
