"""`p3m train` and `p3m evaluate-model`: the paper's training recipe and its test protocols.

    p3m train configs/p3mnet_r34.yaml --data-root P3M-10k --protocol B --nproc 2
    p3m evaluate-model runs/p3mnet_r34/model.pth --set P3M-500-P --data-root P3M-10k --out preds/
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from p3m.data.sets import TestSet


class Protocol(str, Enum):
    B = "B"
    N = "N"


class TestStrategy(str, Enum):
    hybrid = "hybrid"
    resize = "resize"


def train_command(
    config: Path | None = typer.Argument(None, help="YAML training config (configs/*.yaml); defaults otherwise."),
    model: str | None = typer.Option(
        None, "--model", help="Registered model, e.g. p3mnet-vitae-s or a Table 7 ablation (basic-r34, p3mnet-r34-tfi, ...)."
    ),
    protocol: Protocol | None = typer.Option(
        None, "--protocol", help="Training images: B = blurred faces (P3M-10k), N = normal images."
    ),
    data_root: Path | None = typer.Option(None, "--data-root", help="P3M-10k root folder."),
    normal_images: Path | None = typer.Option(
        None, "--normal-images", help="Folder of the normal training images (protocol N)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder (checkpoints, logs)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Global batch size."),
    lr: float | None = typer.Option(None, "--lr"),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Data-loading processes per rank."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1, ..."),
    seed: int | None = typer.Option(None, "--seed"),
    backbone_weights: Path | None = typer.Option(
        None, "--backbone-weights", help="ImageNet checkpoint of the backbone (else random init)."
    ),
    resume: Path | None = typer.Option(None, "--resume", help="Resumable checkpoint to continue from."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config key, e.g. --set optim.lr=1e-4 (repeatable)."
    ),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Processes (DistributedDataParallel via torch.distributed.run)."
    ),
) -> None:
    """Train a P3M-Net model (B:B / B:N with --protocol B, N:N with --protocol N)."""
    flags = {
        "model": model,
        "protocol": protocol.value if protocol else None,
        "data_root": str(data_root) if data_root else None,
        "normal_images": str(normal_images) if normal_images else None,
        "out": str(out) if out else None,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_steps": max_steps,
        "workers": workers,
        "device": device,
        "seed": seed,
        "backbone_weights": str(backbone_weights) if backbone_weights else None,
    }
    from p3m.training.__main__ import flags_to_values
    from p3m.training.config import load_config

    # Validate here, so a bad config fails once, before any process is started.
    train_config = load_config(config, overrides, values=flags_to_values(flags))
    if nproc == 1:
        from rich.console import Console

        from p3m.training.trainer import train

        result = train(train_config, resume=resume)
        Console().print(
            f"trained {train_config.model} for {result.step} steps; model: {result.out_dir / 'model.pth'}",
            highlight=False,
        )
        for name, means in result.validation.items():
            Console().print(
                f"{name}: " + "  ".join(f"{key.upper()} {value:.4f}" for key, value in means.items()),
                highlight=False,
            )
        return
    _launch_distributed(nproc, config, flags, overrides, resume)


def _launch_distributed(
    nproc: int, config: Path | None, flags: dict[str, object], overrides: list[str], resume: Path | None
) -> None:
    """Run `python -m p3m.training` on `nproc` local processes, as torchrun would."""
    from torch.distributed.run import main as torchrun_main

    from p3m.errors import P3MError

    argv = [str(config)] if config is not None else []
    for name, value in flags.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if resume is not None:
        argv += ["--resume", str(resume)]
    for override in overrides:
        argv += ["--set", override]
    launcher = ["--standalone", f"--nproc_per_node={nproc}", "-m", "p3m.training", *argv]
    try:
        torchrun_main(launcher)
    except Exception as error:  # ChildFailedError and friends: the ranks already printed their errors
        raise P3MError(f"distributed training on {nproc} processes failed ({type(error).__name__})") from error


def evaluate_model_command(
    checkpoint: Path = typer.Argument(..., help="Model checkpoint (official {'state_dict'} or p3m)."),
    test_set: TestSet = typer.Option(..., "--set", help="Test set: P3M-500-P, P3M-500-NP or RWP."),
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root (or the RWP-636 folder)."),
    strategy: TestStrategy = typer.Option(TestStrategy.hybrid, "--strategy", help="Official test procedure."),
    out: Path | None = typer.Option(None, "--out", help="Write predictions (8-bit PNG) and metrics.json here."),
    model_name: str | None = typer.Option(
        None, "--model", help="Model variant (default: identified from the checkpoint)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, ... (default: what is available)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
) -> None:
    """Run a trained model on a test set with the official procedure and report the metrics."""
    import json

    from rich.console import Console
    from rich.table import Table

    from p3m.data.layout import find_samples
    from p3m.errors import CheckpointError
    from p3m.io import atomic_write_text
    from p3m.models import create_model
    from p3m.models.checkpoints import identify_variant, read_state_dict
    from p3m.training.validation import evaluate_on_set, table_protocol, training_protocol

    name = model_name
    if name is None:
        name = identify_variant(read_state_dict(checkpoint))
        if name is None:
            raise CheckpointError("cannot tell which P3M-Net variant this is; pass --model", checkpoint)
    model = create_model(name, weights=checkpoint, device=device)
    samples = find_samples(data_root, test_set.value)
    if limit is not None:
        samples = samples[:limit]
    evaluation = evaluate_on_set(
        model, samples, strategy=strategy.value, out_dir=out, progress=True,
        description=f"{name} on {test_set.value}", accumulate="eval_py",
    )
    summary = evaluation.summary.to_dict()  # type: ignore[attr-defined]
    table = Table(title=f"{name} on {test_set.value} ({strategy.value}, {len(evaluation.rows)} images)")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for key, value in summary["means"].items():
        table.add_row(key.upper(), f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    if out is not None:
        report = {"checkpoint": str(checkpoint), "model": name, "set": test_set.value,
                  "strategy": strategy.value}
        # Known training images let `p3m table` place the result in the B:B / B:N / N:N table.
        trained_on = training_protocol(checkpoint)
        if trained_on is not None:
            report["training_protocol"] = trained_on
            protocol = table_protocol(trained_on, test_set.value)
            if protocol is not None:
                report["protocol"] = protocol
        report.update({"failed": evaluation.failed, **summary,
                       "per_image": dict(zip(evaluation.names, evaluation.rows, strict=True))})
        atomic_write_text(out / "metrics.json", json.dumps(report, indent=1))
    if evaluation.failed:
        Console(stderr=True).print(f"[red]{len(evaluation.failed)} image(s) failed[/red]: {', '.join(evaluation.failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("evaluate-model")(evaluate_model_command)
