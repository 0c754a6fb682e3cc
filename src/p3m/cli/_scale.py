"""Options shared by the folder commands that can run at scale: engine, inputs lists, shards.

`p3m matte` takes them today; a command whose work is a `p3m.runs` task gets them by adding the
same parameters (the `*_OPTION` objects below) and calling `make_executor`.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from p3m.runs import Executor, RunReport


class Engine(str, Enum):
    """Where a folder command runs its items."""

    local = "local"
    ray = "ray"


ENGINE_OPTION: Any = typer.Option(
    Engine.local,
    "--engine",
    help="local: this process (the default); ray: a Ray Data pipeline, on a local Ray started "
    'for the run or the cluster at --ray-address (needs pip install "p3m\\[scale]").',
)
RAY_ADDRESS_OPTION: Any = typer.Option(
    None, "--ray-address", help="Ray cluster to join (host:port, ray://host:port or auto); default: a local Ray."
)
WORKERS_OPTION: Any = typer.Option(
    None, "--workers", min=1, help="Ray workers (actors), each holding one model (default 1)."
)
BATCH_SIZE_OPTION: Any = typer.Option(
    None, "--batch-size", min=1, help="Images per call of a Ray worker (default 1; at most that many are redone if a worker dies)."
)
CPUS_OPTION: Any = typer.Option(
    None, "--cpus-per-worker", min=0.01, help="CPUs each Ray worker reserves (default 1)."
)
GPUS_OPTION: Any = typer.Option(
    None, "--gpus-per-worker", min=0.0, help="GPUs each Ray worker reserves (default 0; e.g. 0.5 shares one GPU by two)."
)
THREADS_OPTION: Any = typer.Option(
    None,
    "--threads",
    min=1,
    help="Torch threads per worker, either engine (default: the machine's cores locally, the "
    "worker's CPUs on Ray). The same number gives byte-identical outputs in both engines.",
)
INPUT_LIST_OPTION: Any = typer.Option(
    None,
    "--input-list",
    help="A file listing inputs: text (one path a line), CSV or Parquet (a 'path' column); "
    "relative paths are relative to the list. Repeat for several lists.",
)
SHARD_SIZE_OPTION: Any = typer.Option(
    0,
    "--shard-size",
    min=0,
    help="Write outputs into numbered sub-folders of at most N images each (0: no shards); "
    "an image keeps its sub-folder on every run (recorded in shards.jsonl).",
)


def make_executor(
    engine: Engine,
    ray_address: str | None,
    workers: int | None,
    batch_size: int | None,
    cpus_per_worker: float | None,
    gpus_per_worker: float | None,
) -> Executor | None:
    """The executor the options ask for (None: the local engine); ConfigError when Ray options
    are given to the local engine, MissingDependencyError when Ray is not installed."""
    from p3m.errors import ConfigError

    ray_options = {
        "--ray-address": ray_address, "--workers": workers, "--batch-size": batch_size,
        "--cpus-per-worker": cpus_per_worker, "--gpus-per-worker": gpus_per_worker,
    }  # fmt: skip
    if engine is Engine.local:
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --engine ray")
        return None
    from p3m.scale import RayExecutor, require_ray

    require_ray()
    return RayExecutor(
        address=ray_address,
        workers=workers or 1,
        batch_size=batch_size or 1,
        cpus_per_worker=cpus_per_worker or 1.0,
        gpus_per_worker=gpus_per_worker or 0.0,
    )


def print_run_summary(
    console: Console,
    report: RunReport,
    unit: str = "image",
    per_worker: bool = False,
    labels: dict[str, str] | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """One line of totals (done, kept, failed, other statuses, seconds, rate) and, with
    `per_worker`, one line per worker (what it processed, its share of the rate, its seconds
    per item). `labels` names statuses in words (default: the status with spaces); `counts`
    replaces the report's counts per status (a task's own statuses of its images, which must
    agree with its other summaries)."""
    labels = labels or {}
    counts = {status: count for status, count in (counts or report.counts).items() if count}
    processed = len(report.processed)
    seconds = max(report.seconds, 1e-9)
    others = ", ".join(
        f"{labels.get(status, status.replace('_', ' '))} {count}"
        for status, count in counts.items()
        if status not in ("done", "kept", "failed")
    )
    console.print(
        f"done {counts.get('done', 0)}, kept {counts.get('kept', 0)}, failed {counts.get('failed', 0)}"
        + (f", {others}" if others else "")
        + f" in {report.seconds:.1f} s"
        + (f" ({processed / seconds:.2f} {unit}s/s)" if counts.get("done", 0) else ""),
        highlight=False,
    )
    if per_worker:
        for name, stats in sorted(report.workers.items()):
            per_item = stats.seconds / stats.items if stats.items else 0.0
            console.print(
                f"  worker {name}: {stats.items} {unit}(s), {stats.items / seconds:.2f} {unit}s/s "
                f"over the run, {per_item:.2f} s per {unit}",
                highlight=False,
            )
