"""What the package's commands share: an argparse type, and the one-line report of a DnicError."""

from __future__ import annotations

import argparse
import sys

from .errors import DnicError


def positive_int(text: str) -> int:
    """argparse type for a whole number ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return int(text)


def refuse(err: DnicError) -> int:
    """Print a DnicError as one 'error: … Fix: …' line on stderr; return the exit status of bad input, 2."""
    print(f"error: {err.problem} Fix: {err.fix}", file=sys.stderr)
    return 2
