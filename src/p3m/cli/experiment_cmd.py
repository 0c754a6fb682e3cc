"""`p3m experiment ...`: the paper's studies, one sub-command each (a thin layer over the library).

    p3m experiment complexity                          # Table 11 for every registered model
    p3m experiment complexity -m p3mnet-r34 -m basic-r34 --size 512 --repeats 10 --out results/t11

Adding a study: write its library function (progress through a callback), then a command
function here taking the shared options below (`OUT_HELP`, `--fresh`) and rendering progress
with `_progress_callback`, and one line in `register`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

experiment_app = typer.Typer(
    help="The paper's experiments, one command per study: tables in the paper's layout "
    "(Markdown, CSV) plus JSON, resumable.",
    no_args_is_help=True,
)

FRESH_HELP = "Measure everything again instead of resuming from the results already in --out."


def _split_names(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeatable and/or comma-separated names -> a tuple (None when none were given)."""
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    return tuple(names) or None


@contextmanager
def _progress_callback(label: str, console: Console) -> Iterator[Callable[[Any], None]]:
    """A progress bar on `console`; yields a callback taking events with done/total/model/step."""
    from p3m.cli._ui import item_progress

    with item_progress(label, console, show_name=True, show_elapsed=True) as progress:
        task_id = progress.add_task(label, total=None, name="")

        def on_progress(event: Any) -> None:
            progress.update(
                task_id, completed=event.done, total=event.total, name=f"{event.model}: {event.step}"
            )

        yield on_progress


def complexity_command(
    models: list[str] | None = typer.Option(
        None,
        "--models",
        "-m",
        help="Models to measure (repeatable or comma-separated; default: every registered model).",
    ),
    size: str = typer.Option(
        "512", "--size", help="Input size: N (square) or HxW, multiples of 32 (paper: 512)."
    ),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed forward passes per model and device."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed passes before timing."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for the CPU latency (default: torch's current count)."
    ),
    devices: list[str] | None = typer.Option(
        None,
        "--device",
        help="Device to time on (repeatable: cpu, cuda, cuda:1; default: cpu, and cuda when present).",
    ),
    out: Path = typer.Option(
        Path("p3m-results/complexity"), "--out", help="Folder for complexity.md, .csv and .json."
    ),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_HELP),
) -> None:
    """Table 11: parameters, multiply-accumulates (MACs) and latency of each model.

    MACs are PyTorch's FLOP count / 2 (its counter counts 2 FLOPs per multiply-accumulate);
    latencies are medians measured on this machine, each column naming its device (CPU model
    and threads, GPU). Results are saved after every model; running again with the same
    settings resumes.
    """
    from rich.console import Console
    from rich.table import Table

    from p3m.cli.export_cmd import parse_size
    from p3m.evaluation.complexity import COMPLEXITY_FILES, ComplexitySettings, run_complexity

    settings = ComplexitySettings(
        models=_split_names(models),
        size=parse_size(size),
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        devices=_split_names(devices),
    ).resolved()  # bad settings fail here, before the progress bar
    err = Console(stderr=True)
    with _progress_callback("[bold]measuring", err) as on_progress:
        report = run_complexity(settings, out, resume=not fresh, on_progress=on_progress)

    result = report.table()
    table = Table(title=result.title, title_justify="left")
    for column in result.columns:
        table.add_column(column.label, justify="right" if column.key else "left", overflow="fold")
    for row in result.rows:
        table.add_row(*(cell.text for cell in row))
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/dim]", highlight=False, soft_wrap=True)
    written = ", ".join(str(out / name) for name in COMPLEXITY_FILES.values())
    console.print(f"written: {written}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    experiment_app.command("complexity")(complexity_command)
    app.add_typer(experiment_app, name="experiment")
