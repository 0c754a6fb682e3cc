"""Shared test fixtures: where the reference vectors live, and small helpers."""

from __future__ import annotations

import os
import struct
import zlib
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


# Cases that read the 320x448 model references carry this mark: they run wherever ../shared
# is beside the checkout (always in CI) and are reported as skipped, with this reason, elsewhere.
requires_shared = pytest.mark.skipif(
    not SHARED_REFERENCE_DIR.is_dir(),
    reason="the 320x448 model references are only in ../shared/reference, not beside this checkout",
)


def shared_reference(relative: str) -> Path:
    """Path of a reference file that is only in ../shared/reference (tests using it: `requires_shared`)."""
    path = SHARED_REFERENCE_DIR / relative
    assert path.exists(), f"{path} is missing from ../shared/reference"
    return path


def fcp_output_shapes(model, x) -> list[tuple[int, ...]]:
    """Shapes of the outputs of `model.fcp_layers`, in call order, for one inference pass on `x`."""
    import torch

    seen: list[tuple[int, ...]] = []
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda _module, _inputs, out: seen.append(tuple(out.shape))
        )
        for name in model.fcp_layers
    ]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def png_header_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (with its CRC) claiming width x height, and a few bytes of
    pixel data: Pillow reads the size from the header; decoding it would fail as truncated."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
