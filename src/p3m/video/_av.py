"""PyAV, imported on first use with an install hint, and the file checks every reader shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from p3m.errors import MissingDependencyError, VideoReadError
from p3m.io.files import VIDEO_SUFFIXES as _VIDEO_SUFFIXES

INSTALL_HINT = "pip install 'p3m[video]' (it installs PyAV, which ships FFmpeg)"

# The suffixes live in p3m.io (folder scans need them below the video layer).
VIDEO_SUFFIXES: tuple[str, ...] = _VIDEO_SUFFIXES


def import_av() -> Any:
    """The `av` module, or `MissingDependencyError` saying what to install."""
    try:
        import av
    except ImportError as error:
        raise MissingDependencyError(
            f"video needs PyAV, which is not installed: {INSTALL_HINT}"
        ) from error
    return av


def accurate_scaling() -> Any:
    """swscale flags for colour conversions without scaling: accurate rounding and full-resolution
    chroma. swscale's defaults lose up to 3 levels on a grey round trip (8-bit -> limited-range
    YUV -> 8-bit); with these, at most 1."""
    interpolation = import_av().video.reformatter.Interpolation
    return (
        interpolation.BILINEAR
        | interpolation.ACCURATE_RND
        | interpolation.FULL_CHR_H_INT
        | interpolation.FULL_CHR_H_INP
    )


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True when `path` has a video suffix (any case); the file need not exist."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def check_source_file(path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, or `VideoReadError` for a missing, empty or folder path."""
    source = Path(path).expanduser()
    if not source.exists():
        raise VideoReadError("file not found", source)
    if source.is_dir():
        raise VideoReadError("is a directory, not a video file", source)
    if source.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes), not a video", source)
    return source


def describe_av_error(error: BaseException) -> str:
    """A short reason from an FFmpeg error, without PyAV's errno and file name decoration."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    log = getattr(error, "log", None)
    if log and isinstance(log, tuple) and len(log) >= 3 and log[2]:
        text = f"{text} ({str(log[2]).strip()})"
    return text
