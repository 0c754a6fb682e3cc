"""Shared test fixtures: where the reference vectors live, and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REFERENCE_DIR = TESTS_DIR / "data" / "reference"
# The larger reference files (320x448 model outputs) stay in ../shared beside the
# checkout; CI clones the repository with shared/ beside it.
SHARED_REFERENCE_DIR = TESTS_DIR.parent.parent / "shared" / "reference"

# Tests never see the user's weights cache: "auto" must mean the offline default here.
os.environ["P3M_HOME"] = str(TESTS_DIR.parent / ".cache" / "p3m-test-home")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return REFERENCE_DIR


def shared_reference(relative: str) -> Path:
    """Path of a reference file that is only in ../shared/reference (skip the test if absent)."""
    path = SHARED_REFERENCE_DIR / relative
    if not path.exists():
        pytest.skip(f"{relative} is only in ../shared/reference, which is not beside this checkout")
    return path
