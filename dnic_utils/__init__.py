"""dnic: Deeper Networks for Image Classification — the package behind the report's notebooks."""

__version__ = "0.1.0"
