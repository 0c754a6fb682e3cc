"""The names of P3M's test sets, as the enum the commands take (`--set P3M-500-P`).

Kept free of imports beyond the standard library: the CLI reads it when it starts.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TestSet"]


class TestSet(str, Enum):
    """A test set of the paper: P3M-500-P (blurred faces), P3M-500-NP (normal), RWP-636."""

    P = "P3M-500-P"
    NP = "P3M-500-NP"
    RWP = "RWP"
