"""Evaluate a P3M-Net model on a test set (P3M-500-P, P3M-500-NP, RWP) with the official procedure.

Predictions come from `p3m.inference.strategies.predict_p3mnet` (HYBRID or RESIZE) and are scored
as the official tools do: the 8-bit (truncated) alpha the official saver writes, against the
ground truth, with `p3m.evaluation.metrics`. The images go through the folder-run engine
(`p3m.runs`): inputs are read ahead on I/O threads while the model runs, predictions are written
and scored behind it, an image that cannot be evaluated is recorded with its reason and the rest
goes on, and progress is reported as `p3m.runs` events (`on_event`) for the caller to render.

    >>> result = evaluate_on_set(model, find_samples(root, "P3M-500-P"), strategy="hybrid")
    >>> result.summary.means["sad"], result.record(model="p3mnet-r34").write("metrics.json")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from p3m.data.layout import Sample
from p3m.evaluation.metrics import MetricSummary, compute_metrics, summarize
from p3m.evaluation.record import CONVENTION, MetricsRecord, SkippedFile
from p3m.runs import Event, Item, Outcome, RunOptions, RunReport, run_items

__all__ = ["FAST_METRICS", "ModelOnSetTask", "SetEvaluation", "evaluate_on_set"]

logger = logging.getLogger(__name__)

FAST_METRICS = ("sad", "mse", "mad", "sad_t", "mse_t", "mad_t", "sad_fg", "sad_bg")
"""Metrics cheap enough for validation during training (Grad and Conn are left out)."""


@dataclass
class SetEvaluation:
    """Per-image metric rows (input order), their names, the summary, and what failed (with why)."""

    rows: list[dict[str, float]]
    names: list[str]
    summary: MetricSummary
    failed: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    accumulate: str = "float64"
    gt_dir: Path | None = None
    trimap_dir: Path | None = None
    pred_dir: Path | None = None

    def means(self) -> dict[str, float]:
        return dict(self.summary.means)

    def write_csv(self, path: str | PathLike[str]) -> None:
        """The per-image `metrics.csv` of `p3m eval` / `p3m baseline` (`p3m.evaluation.folder`
        columns), one row per evaluated image in input order; written atomically."""
        from p3m.evaluation.folder import write_rows_csv

        write_rows_csv(path, zip(self.names, self.rows, strict=True))

    def record(self, **fields: Any) -> MetricsRecord:
        """The metrics.json record (per-image metrics included); `fields` name the model, set, ..."""
        values: dict[str, Any] = {
            "skipped": list(self.skipped),
            "pred_dir": None if self.pred_dir is None else str(self.pred_dir),
            "gt_dir": None if self.gt_dir is None else str(self.gt_dir),
            "trimap_dir": None if self.trimap_dir is None else str(self.trimap_dir),
            "convention": CONVENTION,
            "accumulate": self.accumulate,
            "per_image": dict(zip(self.names, self.rows, strict=True)),
        }
        values.update(fields)
        return MetricsRecord.from_summary(self.summary, **values)


class ModelOnSetTask:
    """The `p3m.runs.Task` of a model on a test set: read, predict (official strategy), write, score.

    `load` reads the image, ground truth and trimap (raw values, as the official eval reads them);
    `compute` runs the model in the calling thread; `write` writes `<name>.png` (8-bit, the official
    saver's truncation) when `out_dir` is set and scores the prediction. The outcome's details
    hold the image's metrics under "metrics".
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: str = "hybrid",
        metrics: Sequence[str] | None = None,
        out_dir: str | PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.metrics = None if metrics is None else tuple(metrics)
        self.out_dir = None if out_dir is None else Path(out_dir)

    def items(self, samples: Sequence[Sample]) -> list[Item]:
        """One item per sample (its prediction file is the output when `out_dir` is set)."""
        return [
            Item(
                sample.name,
                sample.image,
                {} if self.out_dir is None else {"alpha": self.out_dir / f"{sample.name}.png"},
                sample,
            )
            for sample in samples
        ]

    def load(self, item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        from p3m.io import read_alpha, read_image, read_trimap

        sample: Sample = item.payload
        image = read_image(sample.image)
        gt = read_alpha(sample.alpha)
        trimap = read_trimap(sample.trimap, noncanonical="keep") if sample.trimap else None
        return image, gt, trimap

    def compute(self, item: Item, loaded: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> tuple[Any, ...]:
        from p3m.inference.strategies import predict_p3mnet

        image, gt, trimap = loaded
        prediction = predict_p3mnet(self.model, image, self.strategy)  # type: ignore[arg-type]
        return prediction.alpha_u8_official, gt, trimap

    def write(self, item: Item, result: tuple[Any, ...]) -> Outcome:
        alpha_u8, gt, trimap = result
        if self.out_dir is not None:
            from p3m.io import write_png

            write_png(item.outputs["alpha"], alpha_u8)
        metrics = compute_metrics(alpha_u8, gt, trimap, metrics=self.metrics)
        return Outcome(details={"metrics": metrics})


def _only_folder(paths: Sequence[Path | None]) -> Path | None:
    folders = {Path(path).parent for path in paths if path is not None}
    return next(iter(folders)) if len(folders) == 1 else None


def evaluate_on_set(
    model: nn.Module,
    samples: Sequence[Sample],
    strategy: str = "hybrid",
    metrics: Sequence[str] | None = None,
    out_dir: str | PathLike[str] | None = None,
    accumulate: str = "float64",
    on_event: Callable[[Event], None] | None = None,
    options: RunOptions | None = None,
) -> SetEvaluation:
    """Predict every sample, optionally write `<name>.png` (8-bit) to `out_dir`, and score it.

    A sample that cannot be read or predicted is recorded (`failed`, `skipped` with the reason)
    and skipped. `on_event` receives the run's `p3m.runs` events (progress). `accumulate` is passed
    to `p3m.evaluation.metrics.summarize` ("eval_py" reproduces the official aggregate). Every
    image is predicted again (`options` default to no resume): a model evaluation is cheap to
    trust, a stale prediction folder is not.
    """
    task = ModelOnSetTask(model, strategy, metrics, out_dir)
    if task.out_dir is not None:
        task.out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        report = run_items(task.items(samples), task, options=options or RunOptions(resume=False), on_event=on_event)
    finally:
        model.train(was_training)
    return _set_evaluation(report, samples, accumulate, task.out_dir)


def _set_evaluation(
    report: RunReport, samples: Sequence[Sample], accumulate: str, out_dir: Path | None
) -> SetEvaluation:
    rows: list[dict[str, float]] = []
    names: list[str] = []
    skipped: list[SkippedFile] = []
    for record in report.records:
        if record.failed:
            logger.info("%s", record.error)
            skipped.append(SkippedFile(record.key, record.error or "could not be evaluated"))
        elif "metrics" in record.details:
            rows.append(dict(record.details["metrics"]))
            names.append(record.key)
        else:  # kept from an earlier run (resume) whose journal did not hold its metrics
            skipped.append(SkippedFile(record.key, "prediction kept from an earlier run without its metrics"))
    return SetEvaluation(
        rows,
        names,
        summarize(rows, names, accumulate=accumulate),  # type: ignore[arg-type]
        failed=[item.name for item in skipped],
        skipped=skipped,
        accumulate=accumulate,
        gt_dir=_only_folder([sample.alpha for sample in samples]),
        trimap_dir=_only_folder([sample.trimap for sample in samples]),
        pred_dir=out_dir,
    )
