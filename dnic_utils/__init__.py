"""dnic: Deeper Networks for Image Classification — the package behind the report's notebooks (its version: pyproject.toml)."""
