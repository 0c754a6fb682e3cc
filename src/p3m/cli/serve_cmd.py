"""`p3m serve`: the HTTP service with its small web page."""

from __future__ import annotations

from enum import Enum

import typer

from p3m.cli._options import DEVICE_OPTION_HELP, max_image_pixels_option


class StrategyChoice(str, Enum):
    hybrid = "hybrid"
    resize = "resize"


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1 keeps it local)."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: a free one, printed)."),
    model: str = typer.Option(
        "auto",
        "--model",
        "-m",
        help="auto (P3M-Net ViTAE-S if its weights are cached, else selfie-cf), selfie-cf, "
        "p3mnet-r34, p3mnet-swin-t, p3mnet-vitae-s, or an .onnx file from p3m export-onnx.",
    ),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Checkpoint path or cached weights name."),
    strategy: StrategyChoice = typer.Option(
        StrategyChoice.hybrid, "--strategy", help="Official P3M-Net test-time strategy."
    ),
    max_pixels: int = typer.Option(
        0,
        "--max-pixels",
        help="Pixel budget: larger images are matted shrunk and the alpha upsampled back "
        "(0 = default, about 1080 x 1620; -1 = no budget).",
    ),
    device: str | None = typer.Option(None, help=DEVICE_OPTION_HELP),
    max_image_pixels: int = max_image_pixels_option(),
    max_upload_mb: int = typer.Option(40, min=1, help="Largest accepted upload (the whole request), in MiB."),
    workers: int | None = typer.Option(
        None,
        min=1,
        help="Inference threads, each with its own loaded model (default: 2 for selfie-cf, "
        "1 for P3M-Net and ONNX models, which use every core alone).",
    ),
    queue: int = typer.Option(
        32, min=0, help="Requests waiting beyond those being computed; more are answered 503 + Retry-After."
    ),
    timeout: float = typer.Option(
        120.0, min=0.1, help="Seconds a request may take from arrival to answer; then 504."
    ),
) -> None:
    """Serve the matting and anonymisation API and a web page at http://HOST:PORT/ (models are loaded first)."""
    from p3m.errors import MissingDependencyError
    from p3m.inference.budget import pixel_budget_from_option
    from p3m.serve import ServeConfig, create_app, listening_socket

    pixel_budget_from_option(max_pixels, "--max-pixels")  # the option's own words, before anything loads

    try:
        import uvicorn
    except ImportError as error:
        raise MissingDependencyError('p3m serve needs uvicorn: pip install "p3m[serve]"') from error
    config = ServeConfig(
        model=model,
        weights=weights,
        device=device,
        strategy=strategy.value,
        max_pixels=None if max_pixels == 0 else -1 if max_pixels == -1 else max_pixels,
        max_upload_bytes=max_upload_mb << 20,
        max_image_pixels=max_image_pixels,
        workers=workers,
        max_queue=queue,
        timeout=timeout,
    )
    sock = listening_socket(host, port)  # a busy port fails here, before the models load
    with sock:
        app = create_app(config, preload=True)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"p3m serving on http://{shown}:{sock.getsockname()[1]}/ (model {app.state.pool.loaded.name}, "
            f"{config.worker_count} worker(s), queue {queue}, timeout {timeout:g} s); Ctrl+C stops it"
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
        server.run(sockets=[sock])


def register(app: typer.Typer) -> None:
    """Add `p3m serve` to the command line."""
    app.command("serve")(serve)
