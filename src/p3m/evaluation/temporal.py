"""Temporal coherence of video mattes: dtSSD, and per-frame errors of an alpha sequence.

dtSSD (Erofeev, Gitman, Vatolin, Fedorov & Wang, "Perceptually Motivated Benchmark for Video
Matting", BMVC 2015) compares how the predicted and the true mattes change from one frame to
the next, so it measures flicker rather than per-frame error. As the video-matting literature
reports it (e.g. Lin et al., "Robust High-Resolution Video Matting with Temporal Guidance",
WACV 2022, and their evaluation code), with alpha in [0, 1]:

    dtSSD_t = 100 * sqrt( mean_p ( (pred_t - pred_{t-1}) - (gt_t - gt_{t-1}) )^2 ),  t >= 1
    dtSSD   = mean over t = 1 .. T-1 of dtSSD_t

A matte that is off by the same amount in every frame has dtSSD 0; one that flickers around
the truth does not. Per-frame SAD / MSE / MAD are the official P3M ones
(`p3m.evaluation.metrics.sad_mse_mad`: SAD is the sum of absolute differences / 1000).

    >>> dtssd(pred_frames, gt_frames)                     # float, lower is steadier
    >>> evaluation = evaluate_alpha_sequence(pred_frames, gt_frames)   # streaming, per frame
    >>> evaluation.means["dtssd"], evaluation.rows[3]["sad"]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from p3m.errors import ShapeMismatchError
from p3m.evaluation.metrics import sad_mse_mad

__all__ = [
    "VIDEO_METRIC_KEYS",
    "VideoEvaluation",
    "dtssd",
    "dtssd_frame",
    "evaluate_alpha_sequence",
]

VIDEO_METRIC_KEYS: tuple[str, ...] = ("sad", "mse", "mad", "dtssd")
"""Per-frame keys of `evaluate_alpha_sequence` (dtSSD is undefined, None, on frame 0)."""


def _alpha64(alpha: np.ndarray, what: str) -> np.ndarray:
    """float64 H x W in [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    alpha = np.asarray(alpha)
    if alpha.ndim == 3 and alpha.shape[2] == 1:
        alpha = alpha[:, :, 0]
    if alpha.ndim != 2:
        raise ValueError(f"{what} must be a 2-D H x W matte, got shape {alpha.shape}")
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float64) / 255.0
    if not np.issubdtype(alpha.dtype, np.floating):
        raise ValueError(f"{what} must be float in [0, 1] or uint8, got {alpha.dtype}")
    return alpha.astype(np.float64)


def dtssd_frame(
    pred: np.ndarray, pred_previous: np.ndarray, gt: np.ndarray, gt_previous: np.ndarray
) -> float:
    """dtSSD of one frame t >= 1: 100 x the RMS of (pred_t - pred_{t-1}) - (gt_t - gt_{t-1}).

    Mattes are float in [0, 1] (or uint8, divided by 255), all four the same H x W; computed
    in float64. Raises `ShapeMismatchError` when the sizes differ.
    """
    arrays = [
        _alpha64(pred, "prediction"),
        _alpha64(pred_previous, "previous prediction"),
        _alpha64(gt, "ground truth"),
        _alpha64(gt_previous, "previous ground truth"),
    ]
    if len({array.shape for array in arrays}) != 1:
        raise ShapeMismatchError(
            "dtSSD needs mattes of one size, got "
            + ", ".join(f"{a.shape[1]}x{a.shape[0]}" for a in arrays)
        )
    p, p_prev, g, g_prev = arrays
    difference = (p - p_prev) - (g - g_prev)
    return 100.0 * math.sqrt(float(np.mean(difference * difference)))


def dtssd(pred_frames: Iterable[np.ndarray], gt_frames: Iterable[np.ndarray]) -> float:
    """Mean dtSSD over frames 1 .. T-1 of two equally long matte sequences (see the module doc).

    Raises `ShapeMismatchError` when the sequences differ in length or frame size, and
    `ValueError` for fewer than two frames (no change to compare).
    """
    evaluation = evaluate_alpha_sequence(pred_frames, gt_frames, per_frame_errors=False)
    if evaluation.frames < 2:
        raise ValueError(f"dtSSD needs at least two frames, got {evaluation.frames}")
    value = evaluation.means["dtssd"]
    assert value is not None  # two frames or more give a frame-to-frame change
    return value


@dataclass
class VideoEvaluation:
    """Per-frame rows (`frame`, `sad`, `mse`, `mad`, `dtssd`) and their means over the clip.

    The dtSSD mean is over frames 1 .. T-1; the others over every frame. `means` has every key
    of `VIDEO_METRIC_KEYS`: a metric no frame has a value for (dtSSD of a one-frame clip, which
    has no change to compare; the errors with `per_frame_errors=False`) is None there, as in the
    rows, and `null` in `to_dict()` / JSON.
    """

    rows: list[dict[str, float | int | None]] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.rows)

    @property
    def means(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key in VIDEO_METRIC_KEYS:
            values = [row[key] for row in self.rows if row.get(key) is not None]
            out[key] = float(np.mean(np.asarray(values, dtype=np.float64))) if values else None
        return out

    def to_dict(self) -> dict:
        return {"frames": self.frames, "means": self.means, "rows": self.rows}


def evaluate_alpha_sequence(
    pred_frames: Iterable[np.ndarray],
    gt_frames: Iterable[np.ndarray],
    *,
    per_frame_errors: bool = True,
    on_frame: Callable[[int], None] | None = None,
) -> VideoEvaluation:
    """Score a predicted matte sequence against the true one, frame by frame, streaming.

    Only the previous pair of frames is kept, so clips of any length fit in memory. Frames are
    float [0, 1] or uint8 H x W. `per_frame_errors=False` skips SAD / MSE / MAD. `on_frame(i)`
    is called after each frame (progress). Raises `ShapeMismatchError` when the sequences
    differ in length or a pair differs in size.
    """
    evaluation = VideoEvaluation()
    pred_iter, gt_iter = iter(pred_frames), iter(gt_frames)
    previous: tuple[np.ndarray, np.ndarray] | None = None
    index = 0
    sentinel = object()
    while True:
        pred = next(pred_iter, sentinel)
        gt = next(gt_iter, sentinel)
        if pred is sentinel or gt is sentinel:
            if pred is not gt:
                longer = "prediction" if gt is sentinel else "ground truth"
                raise ShapeMismatchError(
                    f"the {longer} has more frames than the other sequence ({index} matched)"
                )
            break
        p, g = _alpha64(pred, "prediction"), _alpha64(gt, "ground truth")
        if p.shape != g.shape:
            raise ShapeMismatchError(
                f"frame {index}: prediction {p.shape[1]}x{p.shape[0]} and ground truth "
                f"{g.shape[1]}x{g.shape[0]} differ in size"
            )
        row: dict[str, float | int | None] = {"frame": index}
        if per_frame_errors:
            sad, mse, mad = sad_mse_mad(p, g)
            row.update(sad=sad, mse=mse, mad=mad)
        row["dtssd"] = None if previous is None else dtssd_frame(p, previous[0], g, previous[1])
        evaluation.rows.append(row)
        previous = (p, g)
        index += 1
        if on_frame is not None:
            on_frame(index)
    return evaluation
