"""`p3m export-onnx NAME -o FILE`: export a P3M-Net to ONNX and check it with onnxruntime."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from p3m.cli._options import caps_image_pixels


class Int8Method(str, Enum):
    """How an int8 export gets its activation ranges."""

    static = "static"
    dynamic = "dynamic"


class OutputChoice(str, Enum):
    """Which model outputs the ONNX file exposes."""

    all = "all"
    inference = "inference"


def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768) (height x width); a single number means a square."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise typer.BadParameter(f"expected HxW such as 512x512, got {text!r}")
    return values[0], values[1]


def export_onnx_command(
    name: str = typer.Argument(..., help="Registered model: p3mnet-r34, p3mnet-swin-t or p3mnet-vitae-s."),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    weights: str | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="Checkpoint file, or a model name whose cached weights to use (default: NAME's cached weights).",
    ),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Export the untrained model (to test a runtime or a pipeline)."
    ),
    size: str = typer.Option(
        "512x512", "--size", help="HxW traced (the only accepted size with --static); multiples of 32."
    ),
    static: bool = typer.Option(False, "--static", help="Fix batch 1 and --size instead of dynamic axes."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
    outputs: OutputChoice = typer.Option(
        OutputChoice.all,
        "--outputs",
        help="all: the six official outputs; inference: global_logits, local, fusion (what mattes need).",
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Run the file with onnxruntime and compare with torch."
    ),
    exact: bool = typer.Option(
        False, "--exact", help="Trace the reference arithmetic instead of the fast graph (BN folded)."
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Write an int8 model (onnxruntime quantisation, VNNI on CPUs that have it); prints how "
        "far its alpha is from float32 on portraits. Faster, less exact: never the default.",
    ),
    int8_method: Int8Method = typer.Option(
        Int8Method.static, "--int8-method", help="static: calibrated on portraits; dynamic: ranges per call."
    ),
    calibration: Path | None = typer.Option(
        None,
        "--calibration",
        help="Folder of portraits to calibrate --int8 on (default: portraits shipped by installed packages).",
    ),
) -> None:
    """Export a P3M-Net to ONNX; input `image` (N x 3 x H x W, ImageNet-normalised), metadata included.

    `p3m matte --model FILE.onnx` runs the result with onnxruntime.
    """
    from rich.console import Console

    from p3m.errors import ConfigError
    from p3m.models import get_spec
    from p3m.models.export import export_onnx

    height, width = parse_size(size)
    get_spec(name)  # unknown names fail here, listing the known ones
    if random_weights and weights is not None:
        raise ConfigError("--random-weights and --weights exclude each other")
    if calibration is not None and not int8:
        raise ConfigError("--calibration is for --int8 exports")
    chosen = None
    if not random_weights:
        from p3m.errors import ModelNotFoundError
        from p3m.models.hub import resolve_weights

        try:
            chosen = resolve_weights(weights if weights is not None else name, model=name)
        except ModelNotFoundError as error:
            if weights is not None:
                raise
            raise ModelNotFoundError(f"{error}; or export the untrained model with --random-weights") from None
    steps = "trace, check, verify" + (", quantise, measure" if int8 else "")
    with Console(emoji=False, stderr=True).status(f"exporting {name} to {output} ({steps})"):
        report = export_onnx(
            name,
            output,
            weights=chosen,
            height=height,
            width=width,
            dynamic=not static,
            opset=opset,
            verify=verify,
            outputs=outputs.value,
            exact=exact,
            int8=int8_method.value if int8 else None,
            calibration=calibration,
        )
    Console(emoji=False).print(f"wrote {report.summary()}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `p3m export-onnx` to the command line."""
    app.command("export-onnx")(caps_image_pixels(export_onnx_command))
