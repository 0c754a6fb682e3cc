"""Silencing native libraries' start-up chatter on file descriptor 2.

MediaPipe's C++ side (TensorFlow Lite, absl) prints information lines straight to the process's
stderr descriptor when a graph starts, below Python's `sys.stderr`, so `logging` cannot filter
them. `native_stderr_silenced()` points descriptor 2 at /dev/null for a block.

Descriptor 2 belongs to the whole process, so the redirection is process-wide and reference
counted: the first of several overlapping blocks (threads of a folder run, service workers)
saves and redirects it, the last one restores it, and no block restores it while another still
runs. Python-level messages written during the block (warnings, logging to stderr) are lost
too, so blocks are kept to the native call itself. With DEBUG logging on for `p3m`, nothing is
silenced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

__all__ = ["native_stderr_silenced"]

logger = logging.getLogger("p3m")

_lock = threading.Lock()
_depth = 0
_saved: int | None = None


def _enter() -> None:
    global _depth, _saved
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:
            _saved = None  # no descriptor 2 (a daemon, some embeddings): nothing to silence
            return
        try:
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 2)
        except OSError:
            os.close(saved)
            _saved = None
            return
        _saved = saved


def _exit() -> None:
    global _depth, _saved
    with _lock:
        _depth -= 1
        if _depth > 0 or _saved is None:
            return
        try:
            os.dup2(_saved, 2)
        finally:
            os.close(_saved)
            _saved = None


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (process-wide, reference counted,
    thread-safe; a no-op when the `p3m` logger is at DEBUG or the process has no descriptor 2)."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    _enter()
    try:
        yield
    finally:
        _exit()
