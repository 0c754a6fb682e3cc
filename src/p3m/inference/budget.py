"""The matting pixel budget: how many pixels an image is matted at (larger ones are shrunk and
the alpha brought back to full size), and the rule every surface checks it by.

Standard library only, so the command line and `p3m.video` can check a budget without loading
torch.
"""

from __future__ import annotations

from p3m.errors import ConfigError

__all__ = ["MATTE_MAX_PIXELS", "MIN_MATTE_PIXELS", "check_pixel_budget", "pixel_budget_from_option"]

MATTE_MAX_PIXELS = 1_749_600
"""Default pixel budget (1080 x 1620): keeps a P3M-Net pass on CPU within about 3-4 GiB."""

MIN_MATTE_PIXELS = 1024
"""Smallest pixel budget (32 x 32: one P3M-Net input, and a closed-form solve of a few pixels)."""


def check_pixel_budget(max_pixels: int | None, name: str = "max_pixels") -> int | None:
    """`max_pixels` if it is a pixel budget: None (none, full size) or at least `MIN_MATTE_PIXELS`.

    Raises `ConfigError` naming the value as `name` (the command line passes its option, so the
    message reads "--max-pixels must be at least 1024 ..." there and "max_pixels ..." in Python).
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or max_pixels < MIN_MATTE_PIXELS):
        raise ConfigError(f"{name} must be at least {MIN_MATTE_PIXELS} pixels (or None: no budget), got {max_pixels}")
    return max_pixels


def pixel_budget_from_option(value: int, name: str = "--max-pixels") -> int | None:
    """The budget a command-line or form value stands for: 0 the default (`MATTE_MAX_PIXELS`), -1
    none (full size), else the value, at least `MIN_MATTE_PIXELS`; `ConfigError` naming `name`."""
    if value == 0:
        return MATTE_MAX_PIXELS
    if value == -1:
        return None
    if value < MIN_MATTE_PIXELS:
        raise ConfigError(
            f"{name} must be at least {MIN_MATTE_PIXELS} pixels (0: the default, about 1080 x 1620; "
            f"-1: no budget), got {value}"
        )
    return value
