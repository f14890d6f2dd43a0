"""Query synthesis (offline templates, Anthropic, OpenAI-compatible servers) and the verification
stages (format, geometry, medical prior, visual) that decide which queries are kept."""
