"""`p3m experiment ...`: the paper's studies, one sub-command each (a thin layer over the library).

    p3m experiment obfuscation --weights r34.pth --data-root P3M-10k            # Table 8
    p3m experiment ablation --data-root P3M-10k --checkpoints basic=b.pth,full=r34.pth   # Table 7
    p3m experiment copy-paste --data-root P3M-10k --checkpoints none=bb.pth,fcp=fcp.pth  # Tables 9/10
    p3m experiment baselines --data-root P3M-10k --normal-images P3M-500-P-normal  # Table 2
    p3m experiment complexity                          # Table 11 for every registered model
    p3m experiment sensitivity photos/ --model selfie-cf    # beyond the paper

Adding a study: write its library function in `p3m.experiments` (progress through typed events),
then a command function here taking the shared options below (`--out`, `--fresh`) and rendering
progress with `_study_progress` (or `_progress_callback` for a callback of done/total), printing
the table with `_print_table`, and one line in `register`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from p3m.cli._options import DEVICE_OPTION_HELP as DEVICE_HELP
from p3m.cli._options import baseline_budget_option, caps_image_pixels
from p3m.vocabulary import TestStrategy

if TYPE_CHECKING:
    from rich.console import Console

    from p3m.evaluation.tables import ResultTable
    from p3m.experiments.events import StudyEvent

experiment_app = typer.Typer(
    help="The paper's experiments, one command per study: tables in the paper's layout "
    "(Markdown, CSV) plus JSON, resumable.",
    no_args_is_help=True,
)

FRESH_HELP = "Measure everything again instead of resuming from the results already in --out."
FRESH_RESULTS_HELP = "Compute every cell again instead of resuming from the results already in --out."
STRATEGY_HELP = "Official test procedure: hybrid (the paper's) or resize (one pass, faster)."
METRICS_HELP = "Table columns, comma-separated (sad, mse, mad, sad_t, mse_t, mad_t, grad, conn); the CSVs hold all."
LIMIT_HELP = "Only the first N images of each test set (a quick look)."


def _split_names(values: list[str] | None) -> tuple[str, ...] | None:
    """Repeatable and/or comma-separated names -> a tuple (None when none were given)."""
    names = [name.strip() for value in values or () for name in value.split(",") if name.strip()]
    return tuple(names) or None


@contextmanager
def _progress_callback(label: str, console: Console) -> Iterator[Callable[[Any], None]]:
    """A progress bar on `console`; yields a callback taking events with done/total/model/step."""
    from p3m.cli._ui import item_progress

    state: dict[str, int] = {}
    with _interrupted_line(console, state), item_progress(label, console, show_name=True, show_elapsed=True) as progress:
        task_id = progress.add_task(label, total=None, name="")

        def on_progress(event: Any) -> None:
            state.update(done=event.done, total=event.total)
            progress.update(
                task_id, completed=event.done, total=event.total, name=f"{event.model}: {event.step}"
            )

        yield on_progress


# The options of `p3m experiment ...` that set each setting a study's results depend on, where
# the option is not the setting's name in kebab case; settings no option sets are named in words.
SETTING_OPTIONS = {
    "changed_threshold": "--threshold", "checkpoint": "--checkpoints", "transform": "--obfuscations / --strength",
    "method": "--methods", "images": "--normal-images", "heatmap": "the heatmap settings",
    "landmarks": "the face landmarks", "solver": "the solver", "solver_kwargs": "the solver's settings",
    "implementation": "the solver's implementation",
}  # fmt: skip


def _reset_reason(event: Any) -> str:
    """Why a cell's results are computed again, in the command line's terms (`--threshold`)."""
    if event.fresh:
        return "computed afresh (--fresh)"
    if event.settings:
        named = (SETTING_OPTIONS.get(key, "--" + key.replace("_", "-")) for key in event.settings)
        return f"made with other settings ({', '.join(dict.fromkeys(named))})"
    return event.reason


@contextmanager
def _interrupted_line(console: Console, state: dict[str, int]) -> Iterator[None]:
    """On Ctrl-C, after the bar is gone: `interrupted: done/total done; run again to resume`
    (`state`'s counts, kept up to date by the caller), as folder runs end (Typer turns the
    KeyboardInterrupt into exit code 130 without a word)."""
    from p3m.cli._ui import INTERRUPT_REPORTED

    try:
        yield
    except KeyboardInterrupt:
        console.print(
            f"interrupted: {state.get('done', 0)}/{state.get('total', 0)} done; run again to resume", highlight=False
        )
        INTERRUPT_REPORTED.set()
        raise


@contextmanager
def _study_progress(label: str, console: Console) -> Iterator[Callable[[StudyEvent], None]]:
    """One bar over every image of a study (`p3m.experiments.events`), the current cell and image
    beside it; a note when a cell's earlier results are computed again or results of an earlier run are
    kept, a red line per failed image."""
    from rich.progress import (
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from p3m.cli._ui import flexible_bar, name_column, record_error
    from p3m.experiments.events import CellProgress, CellReset, StudyResumed, StudyStarted
    from p3m.runs import ItemFinished, RunStarted

    progress = Progress(
        TextColumn(label), flexible_bar(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        name_column(), console=console, transient=True,
    )  # fmt: skip
    state: dict[str, Any] = {}
    counts = {"done": 0, "total": 0}  # images with results (kept or computed), over all cells

    def on_event(event: StudyEvent) -> None:
        if isinstance(event, StudyStarted):
            counts["total"] = event.items
            state["task"] = progress.add_task(label, total=event.items, name="")
        elif isinstance(event, CellReset):
            progress.console.print(
                f"[yellow]note:[/yellow] {event.cell}: earlier results replaced once computed again, {_reset_reason(event)}",
                highlight=False, soft_wrap=True,
            )  # fmt: skip
        elif isinstance(event, StudyResumed):
            progress.console.print(f"[yellow]note:[/yellow] {event.worded('--fresh')}", highlight=False, soft_wrap=True)
        elif isinstance(event, CellProgress) and "task" in state:
            inner = event.event
            if isinstance(inner, RunStarted):
                counts["done"] += inner.kept
                progress.update(state["task"], advance=inner.kept, name=event.cell)
            elif isinstance(inner, ItemFinished):
                counts["done"] += not inner.record.failed
                progress.update(state["task"], advance=1, name=f"{event.cell}: {inner.record.key}")
                if inner.record.failed:
                    progress.console.print(
                        f"[red]error:[/red] {event.cell}: {record_error(inner.record)}", highlight=False, soft_wrap=True
                    )

    with _interrupted_line(console, counts), progress:
        yield on_event


def _print_table(result: ResultTable, written: list[Path]) -> None:
    """The table (rich), its notes, and the files written, on stdout."""
    from rich.table import Table

    table = Table(title=result.title, title_justify="left")
    previous = None
    for index, column in enumerate(result.columns):
        # A group's name heads its first column only, as in the paper.
        group = column.group if column.group and column.group != previous else ""
        previous = column.group
        header = f"{group}\n{column.label}" if any(c.group for c in result.columns) else column.label
        table.add_column(header, justify="right" if column.key else "left", overflow="fold", no_wrap=index == 0)
    for row in result.rows:
        table.add_row(*(f"[bold]{cell.text}[/bold]" if cell.bold else cell.text for cell in row))
    from p3m.cli._ui import print_table, table_console

    console = table_console()
    print_table(console, table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/dim]", highlight=False, soft_wrap=True)
    if written:
        console.print(f"written: {', '.join(str(path) for path in written)}", highlight=False, soft_wrap=True)
    else:
        console.print("written: nothing", highlight=False, soft_wrap=True)


def _finish(result: Any, console: Console) -> None:
    """Print the study's table and files; exit 1 when images failed (after listing them)."""
    from p3m.cli._ui import exit_if_failed

    _print_table(result.table, list(result.files.values()))
    exit_if_failed(console, result.failures, "{count} image(s) failed")


def _metrics(text: str) -> tuple[str, ...]:
    from p3m.experiments.runner import check_metrics

    return check_metrics(text.split(","))


def obfuscation_command(
    weights: str = typer.Option(..., "--weights", "-w", help="Checkpoint file (or a model name with cached weights)."),
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root; its P3M-500-P needs facemask/."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Registered variant of the checkpoint (default: identified from it)."
    ),
    methods: str = typer.Option("blur,mosaic,mask", "--methods", help="Obfuscations (rows), comma-separated."),
    normal_images: Path | None = typer.Option(
        None,
        "--normal-images",
        help="The normal (unobfuscated) P3M-500-P images: obfuscate those (the paper's setting) and add "
        "an unobfuscated row. Default: the released, already blurred images.",
    ),
    strength: float = typer.Option(1.0, "--strength", help="Multiplies the blur sigma and mosaic block size."),
    strategy: TestStrategy = typer.Option(TestStrategy.hybrid, "--strategy", help=STRATEGY_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help=LIMIT_HELP),
    metrics: str = typer.Option("sad,mse,mad", "--metrics", help=METRICS_HELP),
    out: Path = typer.Option(Path("p3m-results/obfuscation"), "--out", help="Output folder."),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_RESULTS_HELP),
) -> None:
    """Table 8: a model on P3M-500-P with its faces blurred, mosaiced or masked inside facemask/.

    Writes OUT/obfuscation.md, .csv, .json and, per row, OUT/<method>/P3M-500-P/ (predictions,
    metrics.csv, metrics.json). Running again resumes; exit code 1 if an image failed.
    """
    from rich.console import Console

    from p3m.experiments.obfuscation import ObfuscationSettings, run_obfuscation_study

    settings = ObfuscationSettings(
        weights=Path(weights), data_root=data_root, model=model,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()), normal_images=normal_images,
        strength=strength, strategy=strategy.value, device=device, limit=limit, metrics=_metrics(metrics),
    )  # fmt: skip
    err = Console(emoji=False, stderr=True)
    with _study_progress("[bold]Table 8", err) as on_event:
        result = run_obfuscation_study(settings, out, fresh=fresh, on_event=on_event)
    _finish(result, err)


def ablation_command(
    checkpoints: list[str] = typer.Option(
        ...,
        "--checkpoints",
        "-c",
        help="ROW=CHECKPOINT for the rows basic, tfi, tfi-sbfi, tfi-dbfi, full (comma-separated or repeated).",
    ),
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root."),
    backbone: str = typer.Option("r34", "--backbone", help="r34, swin-t or vitae-s (the rows' variants)."),
    sets: str = typer.Option("P3M-500-P,P3M-500-NP", "--sets", help="Test sets (column groups), comma-separated."),
    strategy: TestStrategy = typer.Option(TestStrategy.hybrid, "--strategy", help=STRATEGY_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help=LIMIT_HELP),
    metrics: str = typer.Option("sad,mse,mad", "--metrics", help=METRICS_HELP),
    out: Path = typer.Option(Path("p3m-results/ablation"), "--out", help="Output folder."),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_RESULTS_HELP),
) -> None:
    """Table 7: the integration modules ablated, with each row's parameter count.

    Each checkpoint must be of its row's variant on --backbone (basic-r34, p3mnet-r34-tfi, ...,
    p3mnet-r34), e.g. trained with `p3m train --model basic-r34`. Rows without a checkpoint
    keep their parameter counts. Running again resumes; exit code 1 if an image failed.
    """
    from rich.console import Console

    from p3m.experiments.ablation import ROW_KEYS, AblationSettings, run_ablation_study
    from p3m.experiments.runner import parse_named_paths

    settings = AblationSettings(
        checkpoints=parse_named_paths(checkpoints, ROW_KEYS, "--checkpoints"), data_root=data_root,
        backbone=backbone, sets=tuple(s.strip() for s in sets.split(",") if s.strip()), strategy=strategy.value,
        device=device, limit=limit, metrics=_metrics(metrics),
    )  # fmt: skip
    err = Console(emoji=False, stderr=True)
    with _study_progress("[bold]Table 7", err) as on_event:
        result = run_ablation_study(settings, out, fresh=fresh, on_event=on_event)
    _finish(result, err)


def copy_paste_command(
    checkpoints: list[str] = typer.Option(
        ...,
        "--checkpoints",
        "-c",
        help="ROW=CHECKPOINT for the rows none (B, no P3M-CP), icp, fcp (B with P3M-CP) and normal "
        "(N: normal training images); comma-separated or repeated.",
    ),
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Registered variant of the checkpoints (default: identified from each)."
    ),
    strategy: TestStrategy = typer.Option(TestStrategy.hybrid, "--strategy", help=STRATEGY_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    limit: int | None = typer.Option(None, "--limit", min=1, help=LIMIT_HELP),
    metrics: str = typer.Option("sad,mse,mad", "--metrics", help=METRICS_HELP),
    out: Path = typer.Option(Path("p3m-results/copy-paste"), "--out", help="Output folder."),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_RESULTS_HELP),
) -> None:
    """Tables 9/10: P3M-CP (ICP, FCP) against no P3M-CP and normal training, on P3M-500-P and -NP.

    Every cell's metrics.json carries its protocol (B:B, B:N, N:N), so `p3m table --protocols`
    can lay the results out by protocol too. Running again resumes; exit 1 if an image failed.
    """
    from rich.console import Console

    from p3m.experiments.copy_paste import ROW_KEYS, CopyPasteSettings, run_copy_paste_study
    from p3m.experiments.runner import parse_named_paths

    settings = CopyPasteSettings(
        checkpoints=parse_named_paths(checkpoints, ROW_KEYS, "--checkpoints"), data_root=data_root, model=model,
        strategy=strategy.value, device=device, limit=limit, metrics=_metrics(metrics),
    )  # fmt: skip
    err = Console(emoji=False, stderr=True)
    with _study_progress("[bold]Tables 9/10", err) as on_event:
        result = run_copy_paste_study(settings, out, fresh=fresh, on_event=on_event)
    _finish(result, err)


def baselines_command(
    data_root: Path = typer.Option(..., "--data-root", help="P3M-10k root (P3M-500-P with its trimaps)."),
    normal_images: Path = typer.Option(
        ...,
        "--normal-images",
        help="The normal (unobfuscated) P3M-500-P images, matched by name (not in the public release; "
        "p3m synth-data writes them to validation/P3M-500-P/original_image).",
    ),
    methods: str = typer.Option(
        "cf,knn,lkm,rw,sm,lbdm", "--methods", help="Baselines (rows), comma-separated: cf, knn, lkm, rw, sm, lbdm."
    ),
    max_pixels: int = baseline_budget_option("Solve larger images at this many pixels (0 = full resolution)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help=LIMIT_HELP),
    metrics: str = typer.Option("sad,mse,mad", "--metrics", help=METRICS_HELP),
    out: Path = typer.Option(Path("p3m-results/baselines"), "--out", help="Output folder."),
    fresh: bool = typer.Option(False, "--fresh", help=FRESH_RESULTS_HELP),
) -> None:
    """Table 2: trimap-based traditional methods on the blurred and the normal P3M-500-P images.

    Writes OUT/baselines.md, .csv, .json and, per method and version, OUT/<method>/{blurred,normal}/.
    Running again resumes; exit code 1 if an image failed.
    """
    from rich.console import Console

    from p3m.experiments.baselines import BaselineStudySettings, run_baseline_study

    settings = BaselineStudySettings(
        data_root=data_root, normal_images=normal_images,
        methods=tuple(m.strip().lower() for m in methods.split(",") if m.strip()),
        max_pixels=max_pixels or None, limit=limit, metrics=_metrics(metrics),
    )  # fmt: skip
    err = Console(emoji=False, stderr=True)
    with _study_progress("[bold]Table 2", err) as on_event:
        result = run_baseline_study(settings, out, fresh=fresh, on_event=on_event)
    _finish(result, err)


def sensitivity_command(
    images: list[Path] = typer.Argument(..., help="Images and/or folders of images."),
    model: str = typer.Option(
        "auto", "--model", "-m", help="auto, selfie-cf, a registered P3M-Net, or an .onnx file (as p3m matte)."
    ),
    weights: str | None = typer.Option(None, "--weights", "-w", help="Checkpoint of a P3M-Net model."),
    alphas: Path | None = typer.Option(
        None, "--alphas", help="Ground-truth mattes by name: the band is theirs and the table adds SAD/ΔSAD."
    ),
    facemasks: Path | None = typer.Option(
        None, "--facemasks", help="Face masks by name (0/255 PNG; default: detected with p3m's landmarks)."
    ),
    obfuscations: str = typer.Option(
        "blur:0.5,blur:1,blur:2,mosaic,mask",
        "--obfuscations",
        help="METHOD[:STRENGTH], comma-separated (strength multiplies the blur sigma / mosaic block).",
    ),
    strategy: TestStrategy = typer.Option(TestStrategy.hybrid, "--strategy", help=STRATEGY_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    band_margin: int = typer.Option(3, "--band-margin", min=0, help="Pixels the hair/transition band is dilated by."),
    threshold: float = typer.Option(0.1, "--threshold", help="|Δα| above which a pixel counts as changed."),
    out: Path = typer.Option(Path("p3m-results/sensitivity"), "--out", help="Output folder."),
    fresh: bool = typer.Option(False, "--fresh", help="Compute every image again instead of resuming."),
) -> None:
    """How much each face obfuscation changes a model's matte, overall and per region (beyond the paper).

    Per image: the matte of the image and of each obfuscated version; |Δα| averaged over the
    face mask, the hair/transition band and the rest. Writes OUT/sensitivity.md, .csv, .json,
    OUT/per_image.csv and a heat-map sheet per image in OUT/heatmaps/. Running again resumes;
    exit code 1 if an image failed.
    """
    from rich.console import Console

    from p3m.experiments.sensitivity import Obfuscation, SensitivitySettings, run_sensitivity

    settings = SensitivitySettings(
        images=tuple(images), model=model, weights=weights, alphas=alphas, facemasks=facemasks,
        obfuscations=tuple(Obfuscation.parse(text) for text in obfuscations.split(",") if text.strip()),
        strategy=strategy.value, device=device, band_margin=band_margin, changed_threshold=threshold,
    )  # fmt: skip
    err = Console(emoji=False, stderr=True)
    with _study_progress("[bold]sensitivity", err) as on_event:
        result = run_sensitivity(settings, out, fresh=fresh, on_event=on_event)
    _print_table(result.table, [path for kind, path in result.files.items() if kind != "heatmaps"])
    from p3m.cli._ui import exit_if_failed

    exit_if_failed(err, result.failures, "{count} image(s) failed")


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
    err = Console(emoji=False, stderr=True)
    with _progress_callback("[bold]measuring", err) as on_progress:
        report = run_complexity(settings, out, resume=not fresh, on_progress=on_progress)

    _print_table(report.table(), [out / name for name in COMPLEXITY_FILES.values()])


def register(app: typer.Typer) -> None:
    experiment_app.command("obfuscation")(caps_image_pixels(obfuscation_command))
    experiment_app.command("ablation")(caps_image_pixels(ablation_command))
    experiment_app.command("copy-paste")(caps_image_pixels(copy_paste_command))
    experiment_app.command("baselines")(caps_image_pixels(baselines_command))
    experiment_app.command("complexity")(complexity_command)
    experiment_app.command("sensitivity")(caps_image_pixels(sensitivity_command))
    app.add_typer(experiment_app, name="experiment")
