"""Model complexity, the paper's Table 11: parameters, multiply-accumulates and latency per model.

For every model asked for (default: every registered one, published models first, each
followed by its Table 7 ablations):

* **Params (M)**: distinct parameters, shared tensors once and unused heads included (the r34
  models keep the ImageNet classifier `resnet.fc`, as the paper counts them: 39.48M).
* **MACs (G)**: multiply-accumulates of one forward pass at the given size (512 x 512 by default,
  batch 1). They are counted by `torch.utils.flop_counter.FlopCounterMode`, which reports
  2 FLOPs per multiply-accumulate; p3m prints MACs (its FLOPs / 2) and keeps both in the JSON.
  The counter covers convolutions, linear layers and matrix products (attention included);
  element-wise ops, normalisation, pooling, unpooling and resampling are not counted, so tools
  that add those (e.g. ptflops' "GMac") give slightly higher figures.
* **Latency (ms)**: wall-clock time of one forward pass (batch 1, float32, eval mode,
  `torch.inference_mode`, random weights and input, no pre/post-processing) measured on this
  machine: the median of `repeats` passes after `warmup` untimed ones, on the CPU with the
  stated number of threads and, when present, on CUDA (synchronised around each pass). Every
  latency column names its device (CPU model and threads, GPU name).

Everything but the latencies is reproducible run to run. `run_complexity` writes the table as
Markdown and CSV and everything (settings, environment, per-pass times) as JSON, saving after
each model, so an interrupted run resumes where it stopped.

Example::

    report = measure_complexity(ComplexitySettings(models=("p3mnet-r34",), size=(512, 512)))
    print(report.table().to_markdown())
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from p3m.errors import ExperimentError

__all__ = [
    "COMPLEXITY_FILES",
    "ComplexityProgress",
    "ComplexityReport",
    "ComplexityRow",
    "ComplexitySettings",
    "DeviceLatency",
    "count_macs",
    "default_model_order",
    "device_label",
    "measure_complexity",
    "measure_latency",
    "model_label",
    "run_complexity",
]

logger = logging.getLogger(__name__)

COMPLEXITY_FILES = {"markdown": "complexity.md", "csv": "complexity.csv", "json": "complexity.json"}
"""What `run_complexity` writes into its output folder."""

JSON_FORMAT = "p3m-complexity/1"
MACS_NOTE = (
    "MACs: multiply-accumulates of one forward pass (batch 1), counted with "
    "torch.utils.flop_counter, which counts 2 FLOPs per multiply-accumulate; shown are its "
    "FLOPs / 2. Convolutions, linear layers and matrix products are counted; element-wise "
    "ops, normalisation, pooling, unpooling and resampling are not."
)


@dataclass(frozen=True)
class ComplexitySettings:
    """What to measure. `models` None = every registered model (see `default_model_order`);
    `size` = (height, width), multiples of 32; `threads` None = torch's current CPU thread count;
    `devices` None = "cpu", plus "cuda" when CUDA is available."""

    models: tuple[str, ...] | None = None
    size: tuple[int, int] = (512, 512)
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    devices: tuple[str, ...] | None = None

    def resolved(self) -> ComplexitySettings:
        """A copy with models, threads and devices filled in and everything checked.

        Raises ExperimentError for bad values, ModelNotFoundError for unknown models.
        """
        import torch

        from p3m.models import get_spec

        height, width = (int(v) for v in self.size)
        if self.repeats < 1 or self.warmup < 0:
            raise ExperimentError(f"repeats must be >= 1 and warmup >= 0, got {self.repeats} and {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ExperimentError(f"threads must be >= 1, got {self.threads}")
        models = tuple(self.models) if self.models else default_model_order()
        if len(set(models)) != len(models):
            raise ExperimentError(f"a model is listed twice: {', '.join(models)}")
        for name in models:
            spec = get_spec(name)  # unknown names: ModelNotFoundError listing the known ones
            if height % spec.size_multiple or width % spec.size_multiple or min(height, width) < spec.min_size:
                raise ExperimentError(
                    f"{name} cannot take {height}x{width}: height and width must be multiples of "
                    f"{spec.size_multiple} and at least {spec.min_size}"
                )
        devices = self.devices or (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
        checked = []
        for device in devices:
            try:
                kind = torch.device(device).type
            except RuntimeError:
                raise ExperimentError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
            if kind not in ("cpu", "cuda"):
                raise ExperimentError(f"latency is measured on cpu or cuda devices, not {device!r}")
            if kind == "cuda" and not torch.cuda.is_available():
                raise ExperimentError(f"device {device!r} asked for, but CUDA is not available here")
            checked.append(str(torch.device(device)))
        if len(set(checked)) != len(checked):
            raise ExperimentError(f"a device is listed twice: {', '.join(checked)}")
        threads = self.threads or torch.get_num_threads()
        return replace(
            self, models=models, size=(height, width), threads=threads, devices=tuple(checked)
        )


class ComplexityProgress(NamedTuple):
    """A progress event: `done` of `total` steps are finished; `model` and `step` say what runs
    now ("counting MACs", "timing on <device>", or "done" on the last event)."""

    done: int
    total: int
    model: str
    step: str


@dataclass(frozen=True)
class DeviceLatency:
    """Forward-pass times of one model on one device, in milliseconds, in the order measured."""

    device: str
    times_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def min_ms(self) -> float:
        return min(self.times_ms)


@dataclass(frozen=True)
class ComplexityRow:
    """One model: registry name, row label, distinct parameters, MACs (FLOPs / 2), latencies."""

    model: str
    label: str
    parameters: int
    macs: int
    latencies: tuple[DeviceLatency, ...] = ()

    @property
    def flops(self) -> int:
        """What PyTorch's FLOP counter reports: 2 per multiply-accumulate."""
        return 2 * self.macs

    def latency(self, device: str) -> DeviceLatency | None:
        return next((entry for entry in self.latencies if entry.device == device), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "label": self.label,
            "parameters": self.parameters,
            "macs": self.macs,
            "flops": self.flops,
            "latency_ms": {
                entry.device: {
                    "median": entry.median_ms,
                    "min": entry.min_ms,
                    "times": list(entry.times_ms),
                }
                for entry in self.latencies
            },
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ComplexityRow:
        latencies = tuple(
            DeviceLatency(device, tuple(float(t) for t in entry["times"]))
            for device, entry in record.get("latency_ms", {}).items()
        )
        return cls(
            model=str(record["model"]),
            label=str(record["label"]),
            parameters=int(record["parameters"]),
            macs=int(record["macs"]),
            latencies=latencies,
        )


def _cpu_name() -> str:
    """The CPU model ("model name" in /proc/cpuinfo on Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_label(device: str, threads: int | None = None) -> str:
    """How a latency column names its device, e.g. "CPU, 2 threads (Intel Xeon ...)"."""
    import torch

    if torch.device(device).type == "cuda":
        index = torch.device(device).index or 0
        return f"CUDA {device} ({torch.cuda.get_device_name(index)})"
    return f"CPU, {threads} thread{'s' if threads != 1 else ''} ({_cpu_name()})"


def _environment(settings: ComplexitySettings) -> dict[str, Any]:
    import torch

    from p3m._version import __version__

    return {
        "p3m": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "devices": {
            device: device_label(device, settings.threads) for device in settings.devices or ()
        },
    }


def default_model_order(names: Iterable[str] | None = None) -> tuple[str, ...]:
    """Registered models in table order: each published model followed by its Table 7
    ablations (Basic, +TFI, +TFI+sBFI, +TFI+dBFI), then any other models by name."""
    from p3m.models import get_spec, list_models
    from p3m.models.ablation import ABLATIONS, BACKBONES

    available = list(list_models() if names is None else names)
    ordered: list[str] = []
    for backbone in BACKBONES:
        for ablation in (ABLATIONS[-1], *ABLATIONS[:-1]):
            name = ablation.integration.variant_name(backbone)
            if name in available and name not in ordered:
                ordered.append(name)
    rest = sorted(name for name in available if name not in ordered)
    # Ablations of models registered elsewhere follow their full model.
    for name in rest:
        if name not in ordered and get_spec(name).ablation_of is None:
            ordered.append(name)
            ordered.extend(n for n in rest if get_spec(n).ablation_of == name)
    ordered.extend(name for name in rest if name not in ordered)
    return tuple(ordered)


def model_label(name: str) -> str:
    """The row label of `name`: e.g. "P3M-Net (ResNet-34)", "+TFI+sBFI (Swin-T)"; else the name."""
    from p3m.models.ablation import paper_label

    return paper_label(name) or name


def _random_input(size: tuple[int, int], device: Any) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, *size, generator=generator).to(device)


def count_macs(model: Any, size: tuple[int, int] = (512, 512)) -> int:
    """Multiply-accumulates of one forward pass of `model` on a 1 x 3 x H x W input (FLOPs / 2
    by torch.utils.flop_counter; see the module docstring for what is counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    first = next(model.parameters(), None)
    x = _random_input(size, first.device if first is not None else "cpu")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    flops = int(counter.get_total_flops())
    return flops // 2


def measure_latency(
    model: Any, size: tuple[int, int], device: str, repeats: int = 5, warmup: int = 1
) -> DeviceLatency:
    """Time `repeats` forward passes of `model` (already on `device`, eval mode) after `warmup`
    untimed ones; CUDA is synchronised before and after each pass. Times in milliseconds."""
    import torch

    x = _random_input(size, device)
    cuda = torch.device(device).type == "cuda"
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            if cuda:
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize(device)
            if index >= warmup:
                times.append((time.perf_counter() - started) * 1000.0)
    return DeviceLatency(device, tuple(times))


@dataclass
class ComplexityReport:
    """Rows of Table 11 with the settings and environment they were measured in.

    `earlier`: the models whose rows were not measured by this run but kept from an earlier one
    with the same settings (resumed, or saved in the output folder and not asked for this time);
    the table names them in a note. Not saved in the JSON (it describes one run).
    """

    settings: ComplexitySettings
    rows: list[ComplexityRow] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    earlier: tuple[str, ...] = ()

    def table(self) -> Any:
        """The table in the paper's layout (a `p3m.evaluation.tables.ResultTable`): Method,
        Model, Params (M), MACs (G), then one latency column per device, named with it."""
        from p3m.evaluation.tables import Cell, Column, ResultTable

        settings = self.settings
        height, width = settings.size
        devices = list(settings.devices or ())
        labels = self.environment.get("devices", {})
        columns = [
            Column("", "Method"),
            Column("", "Model"),
            Column("params_m", "Params (M)"),
            Column("macs_g", f"MACs (G) at {height}x{width}"),
            *(Column(f"latency_{d}", f"Latency (ms), {labels.get(d, d)}") for d in devices),
        ]
        rows = []
        for row in self.rows:
            cells = [
                Cell(row.label),
                Cell(row.model),
                Cell(f"{row.parameters / 1e6:.2f}", row.parameters / 1e6),
                Cell(f"{row.macs / 1e9:.2f}", row.macs / 1e9),
            ]
            for device in devices:
                entry = row.latency(device)
                cells.append(Cell("–") if entry is None else Cell(f"{entry.median_ms:.1f}", entry.median_ms))
            rows.append(cells)
        notes = [
            "Params: distinct parameters (shared tensors once, unused heads included, as the paper counts).",
            MACS_NOTE.replace("one forward pass", f"one forward pass at {height}x{width}"),
            (
                f"Latency: median of {settings.repeats} forward pass{'' if settings.repeats == 1 else 'es'} "
                f"after {settings.warmup} warm-up pass{'' if settings.warmup == 1 else 'es'}, batch 1, {height}x{width}, float32, inference mode, random "
                f"weights, model only (no pre/post-processing), torch "
                f"{self.environment.get('torch', '?')}, on this machine "
                f"({self.environment.get('cpu_count', '?')} CPU cores)."
            ),
        ]
        shown = [row.model for row in self.rows if row.model in self.earlier]
        if shown:
            notes.append(f"From an earlier run with the same settings (not measured now): {', '.join(shown)}.")
        title = f"Table 11: model complexity at {height}x{width}"
        return ResultTable(title, columns, rows, notes)

    def to_dict(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        return {
            "format": JSON_FORMAT,
            "table": "Table 11 (model complexity)",
            "settings": settings,
            "environment": self.environment,
            "counting": MACS_NOTE,
            "rows": [row.to_dict() for row in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ComplexityReport:
        if record.get("format") != JSON_FORMAT:
            raise ExperimentError(f"not a p3m complexity report (format {record.get('format')!r})")
        raw = dict(record["settings"])
        settings = ComplexitySettings(
            models=None if raw.get("models") is None else tuple(raw["models"]),
            size=tuple(raw["size"]),  # type: ignore[arg-type]
            repeats=int(raw["repeats"]),
            warmup=int(raw["warmup"]),
            threads=raw.get("threads"),
            devices=None if raw.get("devices") is None else tuple(raw["devices"]),
        )
        rows = [ComplexityRow.from_dict(entry) for entry in record.get("rows", [])]
        return cls(settings, rows, dict(record.get("environment", {})))


def _measure_one(
    name: str,
    settings: ComplexitySettings,
    step: Callable[[int, str], None],
) -> ComplexityRow:
    """Build `name` on the CPU, count, then time on each device; `step(index, what)` before each stage."""
    import torch

    from p3m.models import create_model

    step(0, "counting MACs")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, device="cpu")
    parameters = int(model.num_parameters())
    macs = count_macs(model, settings.size)
    latencies = []
    for index, device in enumerate(settings.devices or (), start=1):
        step(index, f"timing on {device}")
        model = model.to(device)
        latencies.append(measure_latency(model, settings.size, device, settings.repeats, settings.warmup))
    del model
    return ComplexityRow(name, model_label(name), parameters, macs, tuple(latencies))


def measure_complexity(
    settings: ComplexitySettings = ComplexitySettings(),
    *,
    previous: Iterable[ComplexityRow] = (),
    on_progress: Callable[[ComplexityProgress], None] | None = None,
    on_row: Callable[[ComplexityReport], None] | None = None,
) -> ComplexityReport:
    """Measure every model of `settings` (see the module docstring) and return the report.

    Rows in `previous` (of models asked for) are kept instead of measured again: pass them only
    when they were measured with the same resolved settings (`run_complexity` checks). CPU
    threads are set for the run and restored afterwards. `on_progress` receives a
    `ComplexityProgress` before each step and once at the end; `on_row(report)` is called after
    each new row (e.g. to save partial results). Raises ExperimentError / ModelNotFoundError
    for bad settings before anything is measured.
    """
    import torch

    settings = settings.resolved()
    models = settings.models or ()
    kept = {row.model: row for row in previous if row.model in models}
    report = ComplexityReport(settings, [], _environment(settings))
    steps_per_model = 1 + len(settings.devices or ())
    total = steps_per_model * len(models)
    done = 0

    def notify(model: str, step: str) -> None:
        if on_progress is not None:
            on_progress(ComplexityProgress(done, total, model, step))

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(settings.threads or previous_threads))
    try:
        for name in models:
            if name in kept:
                report.rows.append(kept[name])
                report.earlier += (name,)
                done += steps_per_model
                continue
            first = done

            def step(index: int, what: str, name: str = name, first: int = first) -> None:
                nonlocal done
                done = first + index
                notify(name, what)

            row = _measure_one(name, settings, step)
            done = first + steps_per_model
            report.rows.append(row)
            logger.info("%s: %s", name, row.to_dict())
            if on_row is not None:
                on_row(report)
    finally:
        torch.set_num_threads(previous_threads)
    notify(models[-1] if models else "", "done")
    return report


def _write(report: ComplexityReport, out_dir: Path) -> None:
    from p3m.io import atomic_write_text

    table = report.table()
    atomic_write_text(out_dir / COMPLEXITY_FILES["json"], report.to_json())
    atomic_write_text(out_dir / COMPLEXITY_FILES["markdown"], table.to_markdown())
    atomic_write_text(out_dir / COMPLEXITY_FILES["csv"], table.to_csv())


def _comparable(settings: ComplexitySettings, environment: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change for earlier rows to be reused: sizes, timing, threads, devices, machine."""
    return {
        "size": list(settings.size),
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "threads": settings.threads,
        "devices": list(settings.devices or ()),
        "torch": environment.get("torch"),
        "cpu": environment.get("cpu"),
        "device_labels": dict(environment.get("devices", {})),
    }


def run_complexity(
    settings: ComplexitySettings,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = True,
    on_progress: Callable[[ComplexityProgress], None] | None = None,
) -> ComplexityReport:
    """Measure, writing complexity.md / .csv / .json into `out_dir` after every model.

    With `resume`, rows already in out_dir/complexity.json are kept when they were measured with
    the same size, repeats, warm-up, threads, devices, torch version and CPU: the models asked
    for are not measured again, and the rows of models not asked for this time stay in the
    files (after the ones asked for; `ComplexityReport.earlier` names every kept row).
    Otherwise (or with `resume=False`) every model asked for is measured again and the files
    hold those only. Files are written atomically.
    """
    resolved = settings.resolved()
    target = Path(out_dir).expanduser()
    if target.exists() and not target.is_dir():
        raise ExperimentError("is not a folder", target)
    target.mkdir(parents=True, exist_ok=True)
    previous: list[ComplexityRow] = []
    existing = target / COMPLEXITY_FILES["json"]
    if resume and existing.is_file():
        try:
            old = ComplexityReport.from_dict(json.loads(existing.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, ExperimentError) as error:
            raise ExperimentError(
                f"cannot resume from it ({error}); pass {{resume}} to measure again",
                existing,
                options={"resume": False},
            ) from None
        if _comparable(old.settings, old.environment) == _comparable(resolved, _environment(resolved)):
            previous = old.rows
            logger.info("resuming: %d model(s) already measured in %s", len(previous), existing)
        else:
            logger.warning("%s was measured with other settings: measuring every model again", existing)
    others = [row for row in previous if row.model not in (resolved.models or ())]

    def merged(report: ComplexityReport) -> ComplexityReport:
        # The saved rows of models not asked for this time are kept (merged by model).
        if not others:
            return report
        earlier = report.earlier + tuple(row.model for row in others)
        return replace(report, rows=[*report.rows, *others], earlier=earlier)

    report = measure_complexity(
        resolved,
        previous=previous,
        on_progress=on_progress,
        on_row=lambda partial: _write(merged(partial), target),
    )
    report = merged(report)
    _write(report, target)
    return report
