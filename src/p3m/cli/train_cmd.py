"""`p3m train` and `p3m evaluate-model`: the paper's training recipe and its test protocols.

    p3m train configs/p3mnet_r34.yaml --data-root P3M-10k --protocol B --nproc 2
    torchrun --nproc_per_node 2 -m p3m.training configs/p3mnet_r34.yaml --data-root P3M-10k
    p3m evaluate-model runs/p3mnet_r34/model.pth --set P3M-500-P --data-root P3M-10k --out preds/

`python -m p3m.training ARGS` (what torchrun starts on every rank) is `p3m train ARGS` run on
that rank (`rank_main`): one option table, the command's, for both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from p3m.cli._options import DEVICE_OPTION_HELP, caps_image_pixels
from p3m.vocabulary import TestSet, TestStrategy
from p3m.vocabulary import TrainingImages as Protocol

if TYPE_CHECKING:
    from p3m.training.config import TrainConfig

# The explicit flags of `p3m train` and the config key each one sets.
FLAG_KEYS = {
    "model": "model",
    "protocol": "data.protocol",
    "data_root": "data.root",
    "normal_images": "data.normal_images",
    "out": "run.out_dir",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "max_steps": "optim.max_steps",
    "workers": "data.workers",
    "device": "run.device",
    "seed": "run.seed",
    "backbone_weights": "run.backbone_weights",
}


def flags_to_values(flags: dict[str, object]) -> dict[str, object]:
    """Config values (dotted key -> value) of the explicit flags that were given (None = not given)."""
    return {FLAG_KEYS[name]: value for name, value in flags.items() if value is not None and name in FLAG_KEYS}


def _under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


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
    from p3m.errors import ConfigError
    from p3m.training.config import load_config

    # Validate here, so a bad config fails once, before any process is started.
    train_config = load_config(config, overrides, values=flags_to_values(flags))
    if nproc == 1:
        _train_on_this_rank(train_config, resume)
        return
    if _under_torchrun():
        raise ConfigError("--nproc starts torchrun itself; under torchrun, leave it out (use --nproc_per_node)")
    _launch_distributed(nproc, config, flags, overrides, resume)


def _train_on_this_rank(train_config: TrainConfig, resume: Path | None) -> None:
    """Train in this process (alone, or as one rank of torchrun); rank 0 shows progress and results."""
    import contextlib

    from rich.console import Console

    from p3m.cli._ui import training_progress
    from p3m.training.distributed import teardown_distributed
    from p3m.training.trainer import train

    main = int(os.environ.get("RANK", "0")) == 0
    show = train_config.run.progress and main
    try:
        with training_progress(Console(emoji=False, stderr=True)) if show else contextlib.nullcontext() as on_event:
            result = train(train_config, resume=resume, on_event=on_event)
    finally:
        teardown_distributed()
    if not main:
        return
    from p3m.evaluation.metrics import DISPLAY_NAMES

    console = Console(emoji=False)
    console.print(
        f"trained {train_config.model} for {result.step} step{'' if result.step == 1 else 's'}; model: {result.out_dir / 'model.pth'}",
        highlight=False,
    )
    for name, means in result.validation.items():
        console.print(
            f"{name}: " + "  ".join(f"{DISPLAY_NAMES.get(key, key)} {value:.4f}" for key, value in means.items()),
            highlight=False,
        )


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
    # torchrun gives each rank one thread unless told, with a note on the terminal; a fair
    # share of this machine's cores is what a local run wants (an explicit value is kept).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
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
    device: str | None = typer.Option(
        None, "--device", help=DEVICE_OPTION_HELP
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N images."),
    label: str | None = typer.Option(
        None,
        "--label",
        help="The method's name in `p3m table` (default: the model variant); name runs apart, e.g. ICP, FCP.",
    ),
) -> None:
    """Run a trained model on a test set with the official procedure and report the metrics.

    An image that cannot be evaluated is reported and skipped; the exit code is then 1.
    """
    from rich.console import Console
    from rich.table import Table

    from p3m.cli._ui import exit_if_failed, run_progress
    from p3m.data.layout import find_samples
    from p3m.errors import CheckpointError
    from p3m.evaluation.metrics import DISPLAY_NAMES
    from p3m.evaluation.model import evaluate_on_set
    from p3m.models import create_model
    from p3m.models.checkpoints import identify_variant, read_state_dict
    from p3m.models.device import resolve_device
    from p3m.training.config import training_protocol
    from p3m.vocabulary import Protocol as TableProtocol

    resolve_device(device)  # a wrong --device fails before the checkpoint is read
    name = model_name
    if name is None:
        name = identify_variant(read_state_dict(checkpoint))
        if name is None:
            raise CheckpointError("cannot tell which P3M-Net variant this is; pass --model", checkpoint)
    model = create_model(name, weights=checkpoint, device=device)
    samples = find_samples(data_root, test_set.value)
    if limit is not None:
        samples = samples[:limit]
    err = Console(emoji=False, stderr=True)
    with run_progress(f"[bold]{name}[/bold] on {test_set.label}", err, show_failures=False) as on_event:
        evaluation = evaluate_on_set(
            model, samples, strategy=strategy.value, out_dir=out, accumulate="eval_py", on_event=on_event
        )
    table = Table(title=f"{name} on {test_set.value} ({strategy.value}, {len(evaluation.rows)} images)")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for key, value in evaluation.summary.means.items():
        table.add_row(DISPLAY_NAMES.get(key, key), f"{value:.4f}")
    Console(emoji=False).print(table)
    if out is not None:
        evaluation.write_csv(out / "metrics.csv")
        # Known training images let `p3m table` place the result in the B:B / B:N / N:N table.
        trained_on = training_protocol(checkpoint)
        evaluation.record(
            method=name, method_label=label, model=name, set_name=test_set.value, strategy=strategy.value,
            checkpoint=str(checkpoint), training_protocol=trained_on,
            protocol=TableProtocol.of(trained_on, test_set.value),
        ).write(out / "metrics.json")
    exit_if_failed(err, ((item.name, item.reason) for item in evaluation.skipped), "{count} image(s) failed")


def rank_main(argv: Sequence[str] | None = None) -> int:
    """`python -m p3m.training ARGS`: `p3m train ARGS` on this rank (what torchrun starts).

    -v / -vv anywhere in ARGS set the log level as `p3m -v` does. Returns the exit code.
    """
    from p3m.cli import main, set_verbosity

    args = list(sys.argv[1:] if argv is None else argv)
    verbosity = [arg for arg in args if arg in ("-v", "-vv", "--verbose")]
    rest = [arg for arg in args if arg not in verbosity]
    set_verbosity(sum(2 if arg == "-vv" else 1 for arg in verbosity))
    try:
        main(rest, command="train", prog_name="python -m p3m.training")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
    return 0


def register(app: typer.Typer) -> None:
    app.command("train")(caps_image_pixels(train_command))
    app.command("evaluate-model")(caps_image_pixels(evaluate_model_command))
