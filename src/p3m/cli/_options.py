"""`--max-image-pixels`, the decoding cap every command that reads images takes.

`caps_image_pixels(command)` adds the option to a command function and runs the command with
`p3m.io.image_pixel_cap` set to it, so every image the command reads (in its threads and in the
processes it starts) is refused from its header above the cap, with a one-line error naming the
file, its size, the cap and this option. The default is the one the library and `p3m serve` use
(`p3m.vocabulary.MAX_IMAGE_PIXELS`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

from p3m.vocabulary import DEVICE_HELP, MAX_IMAGE_PIXELS

DEVICE_OPTION_HELP = f"{DEVICE_HELP} (default: cuda if available, else cpu)."
"""The help of every `--device` that runs a model (one device, as `p3m.models.resolve_device` takes)."""

MAX_IMAGE_PIXELS_HELP = (
    "Refuse images of more pixels than this (width x height, read from the file header before "
    "decoding: a decompression-bomb guard; the default passes 150-megapixel photos); 0 = no cap."
)


def max_image_pixels_option() -> Any:
    """The `--max-image-pixels` option (a fresh object per command)."""
    from p3m.io.images import MAX_PIXELS_ENV, OLD_MAX_PIXELS_ENV

    # The environment variable the library reads too: the option wins, then the variable.
    return typer.Option(
        MAX_IMAGE_PIXELS, "--max-image-pixels", min=0, envvar=[MAX_PIXELS_ENV, OLD_MAX_PIXELS_ENV], help=MAX_IMAGE_PIXELS_HELP
    )


def caps_image_pixels(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with a `--max-image-pixels` option (last), run under that decoding cap."""
    signature = inspect.signature(command, eval_str=True)
    if "max_image_pixels" in signature.parameters:
        raise TypeError(f"{command.__name__} already has a max_image_pixels parameter")

    @functools.wraps(command)
    def run(*args: Any, max_image_pixels: int = MAX_IMAGE_PIXELS, _context: typer.Context, **kwargs: Any) -> Any:
        from p3m.io import image_pixel_cap

        source = _context.get_parameter_source("max_image_pixels")
        if source is not None and source.name == "ENVIRONMENT":
            # Read from P3M_MAX_IMAGE_PIXELS (or its old name): left there, where the library
            # reads the same cap and an image over it is said to be refused by that variable.
            return command(*args, **kwargs)
        with image_pixel_cap(max_image_pixels):
            return command(*args, **kwargs)

    option = inspect.Parameter(
        "max_image_pixels", inspect.Parameter.KEYWORD_ONLY, default=max_image_pixels_option(), annotation=int
    )
    context = inspect.Parameter("_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
    parameters = [
        parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in signature.parameters.values()
    ]
    run.__signature__ = signature.replace(parameters=[*parameters, option, context])  # type: ignore[attr-defined]
    run.__annotations__ = {
        **{parameter.name: parameter.annotation for parameter in parameters},
        "max_image_pixels": int,
        "_context": typer.Context,
        "return": signature.return_annotation,
    }
    return run


BASELINE_MIN_PIXELS = 1024
"""The smallest solve budget a baseline run takes (0 = full resolution); below it the trimap's
known regions vanish from the shrunk image."""


def _baseline_budget(value: int) -> int:
    if 0 < value < BASELINE_MIN_PIXELS:
        raise typer.BadParameter(f"must be 0 (full resolution) or at least {BASELINE_MIN_PIXELS} pixels, got {value}")
    return value


def baseline_budget_option(help_text: str) -> Any:
    """The baselines' `--max-pixels` (default 1,000,000; 0 = full resolution; 1-1023 refused)."""
    return typer.Option(1_000_000, "--max-pixels", min=0, callback=_baseline_budget, help=help_text)
