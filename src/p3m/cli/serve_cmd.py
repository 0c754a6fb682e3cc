"""`p3m serve`: the HTTP service with its small web page."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1 keeps it local)."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    model: str = typer.Option("auto", help="Matting model: auto, selfie-cf or a P3M-Net name."),
    weights: str | None = typer.Option(None, help="Checkpoint path or cached weights name."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: what is there)."),
    max_upload_mb: int = typer.Option(40, min=1, help="Largest accepted upload, in MiB."),
) -> None:
    """Serve the matting API and a web page at http://HOST:PORT/ (the model is loaded first)."""
    from p3m.errors import MissingDependencyError
    from p3m.serve import ServeConfig, create_app

    try:
        import uvicorn
    except ImportError as error:
        raise MissingDependencyError('p3m serve needs uvicorn: pip install "p3m[serve]"') from error
    app = create_app(
        ServeConfig(model=model, weights=weights, device=device, max_upload_bytes=max_upload_mb << 20),
        preload=True,
    )
    typer.echo(f"p3m serving on http://{host}:{port}/ (model {model}); Ctrl+C stops it")
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add `p3m serve` to the command line."""
    app.command("serve")(serve)
