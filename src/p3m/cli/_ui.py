"""Console pieces shared by the commands: progress of runs and trainings, the failure summary.

`metrics_table` renders the means of a folder evaluation (`p3m eval`, `p3m baseline`).
Folder commands report a bad item, skip it, finish the rest and exit with code 1 at the end;
`exit_if_failed` is that last step, so every command prints its failures the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from p3m.evaluation.folder import FolderEvaluation
    from p3m.runs import Event, ItemRecord
    from p3m.training.events import TrainingEvent


PIPED_WIDTH = 10_000
"""Console width when stdout is not a terminal: tables keep their natural width in files and
pipes (at Rich's default of 80 columns their numbers were folded inside the cells)."""


def table_console() -> Console:
    """A stdout console for result tables: the terminal's width; when piped, the width the
    COLUMNS environment variable asks for (`COLUMNS=80 p3m weights list | less`), else unbounded."""
    import os
    import sys

    from rich.console import Console

    if sys.stdout.isatty():
        return Console(emoji=False)
    asked = os.environ.get("COLUMNS", "").strip()
    return Console(emoji=False, width=int(asked) if asked.isdigit() and int(asked) > 0 else PIPED_WIDTH)


def print_table(console: Console, table: Table) -> None:
    """Print a result table whose numbers stay whole in a narrow terminal.

    Rich fits a table to the terminal by folding its cells, which splits numbers (`0.01` over
    `23`), and a table printed wider than the terminal is cut by the terminal's own line wrap.
    A table too wide for the terminal drops its outer border and edge padding first; if that is
    not enough, its columns are printed as several tables one under the other, each as wide as
    the terminal allows and each led by the first column (the row names), as wide data frames
    are shown. Every number reads, and copies, whole.
    """
    from rich import box

    if _natural_width(console, table) > console.width:
        table.box = box.SIMPLE_HEAD
        table.show_edge = False
        table.pad_edge = False
    if _natural_width(console, table) <= console.width or len(table.columns) < 3:
        console.print(table)
        return
    for index, block in enumerate(_column_blocks(console, table)):
        if index:
            console.print()
        width = _natural_width(console, block)
        if width <= console.width:
            console.print(block)
            continue
        # One column with the row names is still wider (a URL): printed whole, the terminal
        # wraps it; Rich would cut the row names and the cells with an ellipsis.
        terminal = console.width
        console.width = width
        try:
            console.print(block)
        finally:
            console.width = terminal


def _natural_width(console: Console, table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=PIPED_WIDTH), table).maximum


def _column_blocks(console: Console, table: Table) -> list[Table]:
    """`table` as tables of its first column and as many of the next columns as fit the width."""
    lead, rest = table.columns[0], table.columns[1:]
    blocks: list[Table] = []
    chosen: list[Any] = []
    for column in rest:
        if chosen and _natural_width(console, _part(table, [lead, *chosen, column], not blocks)) > console.width:
            blocks.append(_part(table, [lead, *chosen], not blocks))
            chosen = []
        chosen.append(column)
    blocks.append(_part(table, [lead, *chosen], not blocks))
    return blocks


def _part(table: Table, columns: list[Any], first: bool) -> Table:
    """A table of some of `table`'s columns (the title on the first part only)."""
    from rich.table import Table

    part = Table(
        title=table.title if first else None, title_justify=table.title_justify, box=table.box,
        show_edge=table.show_edge, pad_edge=table.pad_edge, header_style=table.header_style,
    )  # fmt: skip
    for column in columns:
        part.add_column(column.header, justify=column.justify, style=column.style, no_wrap=True)
    cells = [list(column.cells) for column in columns]
    for row in range(table.row_count):
        part.add_row(*(column_cells[row] for column_cells in cells))
    return part


NAME_WIDTH = 32
"""At most this many cells of a progress bar's item name (cut with an ellipsis)."""


def name_column() -> Any:
    """The progress bars' last column, the item in work, at most `NAME_WIDTH` cells (cut with an
    ellipsis): a long name squeezed the counts and times before it (`0:0…`). Bars with it are
    `flexible_bar()`s, which take the room that is left."""
    from rich.progress import TextColumn
    from rich.table import Column

    return TextColumn(
        "{task.fields[name]}", table_column=Column(no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH)
    )


def flexible_bar() -> Any:
    """A progress bar as wide as the terminal leaves it (at least 10 cells)."""
    from rich.progress import BarColumn
    from rich.table import Column

    return BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10))


def item_progress(
    label: str, console: Console, show_name: bool = False, show_elapsed: bool = False
) -> Progress:
    """A transient `label [bar] done/total [elapsed] eta [name]` bar on `console` (stderr);
    nothing without a terminal.

    With `show_name`, update the task's `name` field with the item being processed.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(label), flexible_bar() if show_name else BarColumn(), MofNCompleteColumn()]
    if show_elapsed:
        columns.append(TimeElapsedColumn())
    columns.append(TimeRemainingColumn())
    if show_name:
        columns.append(name_column())
    # Off a terminal (a pipe, a log file) a live bar has nothing to redraw and leaves blank lines.
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


INTERRUPT_REPORTED = threading.Event()
"""Set once a run's renderer has said how far an interrupted run got (`p3m.cli.main` then
prints no second line)."""


def record_error(record: Any) -> str:
    """A failed record's error as the command line words it: a `P3MError` the record carries
    (`attachments["error"]`) names its suggested options as flags (`--overwrite`)."""
    from p3m.cli import command_line_option
    from p3m.errors import P3MError

    error = record.attachments.get("error") if getattr(record, "attachments", None) else None
    if isinstance(error, P3MError):
        return error.worded(command_line_option)
    return record.error or "failed"


def interrupted_line(event: Any, others: tuple[int, int] = (0, 0)) -> str:
    """How far an interrupted run got (a `p3m.runs.RunInterrupted`), with (done, total) of the
    command's inputs outside that run added, so the line counts every input (images and videos)."""
    return f"interrupted: {event.done + others[0]}/{event.total + others[1]} done; run again to resume"


def record_failure(record: Any, default: str = "failed") -> tuple[str, str]:
    """(input, reason) of a failed record for the end-of-run list: the file named once (the
    error's own path prefix is dropped when it is the input), its options worded as flags."""
    prefix = f"{record.source}: "
    reason = record_error(record) if record.error else default
    return str(record.source), reason[len(prefix):] if reason.startswith(prefix) else reason


@contextlib.contextmanager
def run_progress(
    label: str,
    console: Console,
    describe: Callable[[ItemRecord], str | None] | None = None,
    show_failures: bool = True,
    unit: str = "items",
    others: tuple[int, int] = (0, 0),
) -> Iterator[Callable[[Event], None]]:
    """Render a `p3m.runs` run: yields the `on_event` callback to pass to the run.

    A transient bar over the items to process (`unit`/s, elapsed, time left, current item; none
    when every item is kept), one
    red line per failed item (unless `show_failures` is False: the command lists them at the
    end), and `describe(record)` printed for each finished one when given. Without a terminal
    (a pipe, a log file) there is no bar, only those lines. Ctrl-C ends it with
    `interrupted: done/total done; run again to resume`, counting every input of the command:
    `others` is (done, total) of its inputs outside this run (a folder run's videos, run first).
    """
    from rich.markup import escape
    from rich.progress import (
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from p3m.runs import ItemFinished, RunInterrupted, RunStarted

    progress = Progress(
        TextColumn(label),
        flexible_bar(),
        MofNCompleteColumn(),
        TaskProgressColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        name_column(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # off a terminal a live bar only leaves blank lines
    )
    state: dict[str, object] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, RunStarted):
            for line in event.redone:
                progress.console.print(f"[yellow]note:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
            if event.pending:  # all kept: no bar (a 0/0 one flashed), the command's summary says so
                state["task"] = progress.add_task(label, total=event.pending, name="", rate="")
            state["start"] = time.perf_counter()
        elif isinstance(event, RunInterrupted):
            state["interrupted"] = interrupted_line(event, others)
        elif isinstance(event, ItemFinished):
            record = event.record
            elapsed = max(time.perf_counter() - float(state.get("start", 0.0)), 1e-9)
            rate = f"{event.finished / elapsed:.2f} {unit}/s"
            if "task" in state:
                progress.update(state["task"], advance=1, name=record.key, rate=rate)
            if record.failed:
                if show_failures:
                    progress.console.print(f"[red]error:[/red] {record_error(record)}", highlight=False, soft_wrap=True)
            elif describe is not None:
                line = describe(record)
                if line:
                    progress.console.print(line, highlight=False, soft_wrap=True)

    try:
        with progress:
            yield on_event
    finally:
        if "interrupted" in state:  # after the bar is gone, the last line of the run
            console.print(str(state["interrupted"]), highlight=False, soft_wrap=True)
            INTERRUPT_REPORTED.set()


@contextlib.contextmanager
def training_progress(console: Console) -> Iterator[Callable[[TrainingEvent], None]]:
    """Render a training run (`p3m.training.events`): yields the `on_event` callback to pass on.

    On a terminal, a transient bar over the optimiser steps (epoch and loss in its label, time
    left) and, while a validation pass runs, a second bar over its images. Elsewhere (a log
    file, nohup, CI) plain lines: one at the start (steps, images, device), one every
    `run.log_every` steps and at each epoch's end (loss, s/step), one per validation. Failed
    validation images are logged by the trainer.
    """
    if not console.is_terminal:
        yield _plain_training_lines(console)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from p3m.runs import ItemFinished, RunFinished, RunStarted
    from p3m.training.events import StepFinished, TrainingStarted, ValidationProgress

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )
    tasks: dict[str, object] = {}

    def on_event(event: TrainingEvent) -> None:
        if isinstance(event, TrainingStarted):
            tasks["train"] = progress.add_task("train", total=event.total_steps, completed=event.step)
        elif isinstance(event, StepFinished) and "train" in tasks:
            progress.update(
                tasks["train"], completed=event.step, description=f"train epoch {event.epoch} loss {event.loss:.4f}"
            )
        elif isinstance(event, ValidationProgress):
            run_event = event.event
            if isinstance(run_event, RunStarted):
                tasks["validation"] = progress.add_task(f"validating on {event.set_name}", total=run_event.pending)
            elif isinstance(run_event, ItemFinished) and "validation" in tasks:
                progress.advance(tasks["validation"])
            elif isinstance(run_event, RunFinished) and "validation" in tasks:
                progress.remove_task(tasks.pop("validation"))

    with progress:
        yield on_event


def _plain_training_lines(console: Console) -> Callable[[TrainingEvent], None]:
    """Training progress for a log: what runs (steps, images, device) at the start, then
    `epoch E step S/T loss L (X s/step)` every `log_every` steps and at the end of each epoch,
    and the means of each validation."""
    from p3m.training.events import StepFinished, TrainingStarted, ValidationFinished

    state = {"steps_per_epoch": 0, "log_every": 0, "step": 0, "seconds": 0.0}

    def line(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    def on_event(event: TrainingEvent) -> None:
        if isinstance(event, TrainingStarted):
            state.update(steps_per_epoch=event.steps_per_epoch, log_every=event.log_every, step=event.step, seconds=0.0)
            epochs = -(-event.total_steps // event.steps_per_epoch) if event.steps_per_epoch else 0
            where = f" on {event.device}" if event.device else ""
            if event.world_size > 1:
                where += f" x {event.world_size} processes"
            images = f", {event.num_images} training images" if event.num_images else ""
            begin = f"resuming at step {event.step}: " if event.step else ""
            line(
                f"training: {begin}{event.total_steps} steps ({epochs} epoch{'' if epochs == 1 else 's'} "
                f"of {event.steps_per_epoch}){images}{where}"
            )
        elif isinstance(event, StepFinished):
            per_epoch, every = state["steps_per_epoch"], state["log_every"]
            if not (
                event.step == event.total_steps
                or (per_epoch and event.step % per_epoch == 0)
                or (every and event.step % every == 0)
            ):
                return
            pace = ""
            if event.seconds is not None and event.step > state["step"]:
                pace = f" ({(event.seconds - state['seconds']) / (event.step - state['step']):.3g} s/step)"
                state.update(step=event.step, seconds=event.seconds)
            line(f"epoch {event.epoch} step {event.step}/{event.total_steps} loss {event.loss:.4f}{pace}")
        elif isinstance(event, ValidationFinished):
            from p3m.evaluation.metrics import DISPLAY_NAMES

            means = "  ".join(f"{DISPLAY_NAMES.get(key, key)} {value:.4g}" for key, value in event.means.items())
            line(f"validation on {event.set_name} at step {event.step} ({event.num_images} images): {means}")

    return on_event


def exit_if_failed(
    console: Console, failures: Iterable[tuple[str, str]], title: str, recap: bool = True
) -> None:
    """Print `title` (its "{count}" filled in), one `  name: reason` line per failure; exit 1.

    Does nothing when there are no failures. Example title: "skipped {count} file(s)". Without
    `recap` (a run of one input, whose error line was just printed) only the title is printed.
    """
    failures = list(failures)
    if not failures:
        return
    if not recap:
        console.print(f"[red]{title.format(count=len(failures))}[/red]", highlight=False)
        raise typer.Exit(code=1)
    console.print(f"[red]{title.format(count=len(failures))}:[/red]", highlight=False)
    for name, reason in failures:
        console.print(f"  {name}: {reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def metrics_table(evaluation: FolderEvaluation, width: int) -> Table:
    """Means in the paper's column order; one row per metric when the terminal is narrow."""
    from rich.table import Table

    from p3m.evaluation.metrics import DISPLAY_NAMES, METRIC_KEYS

    summary = evaluation.summary
    keys = [key for key in METRIC_KEYS if key in summary.means]
    title = f"{len(evaluation.rows)} images evaluated, {len(evaluation.skipped)} skipped"
    table = Table(title=title, title_justify="left")
    if width >= 12 * (len(keys) + 1):
        table.add_column("")
        for key in keys:
            table.add_column(DISPLAY_NAMES[key], justify="right")
        table.add_row("mean", *(f"{summary.means[key]:.4g}" for key in keys))
        table.add_row("images", *(str(summary.counts[key]) for key in keys))
        return table
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("images", justify="right")
    for key in keys:
        table.add_row(DISPLAY_NAMES[key], f"{summary.means[key]:.6g}", str(summary.counts[key]))
    return table
