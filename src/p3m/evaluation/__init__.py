"""Evaluation: the official P3M metrics (`metrics`), a folder of predictions (`folder`), a model
on a test set (`model`), the trimap-based baselines (`baselines`), the metrics.json record every
one of them writes (`record`), the paper's tables built from those records (`tables`), and the
temporal coherence of video mattes (`temporal`: dtSSD)."""

from __future__ import annotations

from p3m.evaluation.metrics import (
    METRIC_KEYS,
    MetricSummary,
    compute_metrics,
    conn_error,
    grad_error,
    sad_fg_bg,
    sad_mse_mad,
    sad_mse_mad_trimap,
    summarize,
)
from p3m.evaluation.temporal import (
    VideoEvaluation,
    dtssd,
    dtssd_frame,
    evaluate_alpha_sequence,
)

__all__ = [
    "METRIC_KEYS",
    "MetricSummary",
    "VideoEvaluation",
    "compute_metrics",
    "conn_error",
    "dtssd",
    "dtssd_frame",
    "evaluate_alpha_sequence",
    "grad_error",
    "sad_fg_bg",
    "sad_mse_mad",
    "sad_mse_mad_trimap",
    "summarize",
]
