"""Helpers of the service tests: a fast model stand-in, a real uvicorn server, PNG inspection."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from p3m.models import P3MOutput

SERVER_START_LIMIT = 30.0  # seconds


class StubMatting(torch.nn.Module):
    """A cheap stand-in for P3M-Net, given to `Matter` as a built model (its public constructor).

    Foreground where the image is bright. With `gate` set, each forward pass waits for the gate
    (so a test can hold a worker busy); `calls` counts forward passes.
    """

    min_size = 32
    variant = "stub"

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.gate = gate
        self.calls = 0
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.eval()

    def forward(self, x: torch.Tensor) -> P3MOutput:
        self.calls += 1
        if self.gate is not None and not self.gate.wait(timeout=60):
            raise RuntimeError("test gate never opened")
        brightness = x.mean(dim=1, keepdim=True) * self.scale
        local = torch.sigmoid(4 * brightness)
        logits = torch.cat([-brightness * 8, 1 - (brightness * 8).abs(), brightness * 8], dim=1)
        return P3MOutput(logits, local, local, logits, logits, logits)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def uvicorn_server(app: Any, before_stop: Any = None) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.

    `before_stop` is called first on the way out, even when the test failed (open a gate).
    """
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_LIMIT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        if before_stop is not None:
            before_stop()
        server.should_exit = True
        thread.join(timeout=SERVER_START_LIMIT)
        assert not thread.is_alive(), "uvicorn did not stop"


def wait_until(predicate: Any, limit: float = 10.0, what: str = "condition") -> None:
    """Poll `predicate()` until it is true, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunks(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order (checks the signature and each CRC)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append(kind.decode("latin-1"))
        offset += 12 + length
    return chunks
