"""The official P3M matting metrics, number for number, and their dataset means.

SAD, MSE, MAD (whole image); SAD-T, MSE-T, MAD-T (trimap versions); SAD-FG, SAD-BG; Grad; Conn.
These reproduce the official P3M / P3M-Net evaluation code (Ma, Li et al., "Rethinking Portrait
Matting with Privacy Preserving", IJCV 2023), quirks included:

* SAD is divided by 1000; MSE and MAD by a pixel count (N, or the number of unknown pixels).
* The trimap metrics sum over the whole image of the prediction forced to 0/1 on the known
  regions; only the normaliser comes from the unknown band. Without any 128 pixel the normaliser
  falls back to the number of non-canonical trimap values, and without those MSE-T and MAD-T are
  inf (or nan when the forced error is 0), exactly as the official code returns.
* Grad uses Gaussian-derivative filters (sigma 1.4, 13 taps, reflect borders) computed in
  float32 and is divided by 10; it is whole-image only, as is Conn.
* Conn uses thresholds `np.arange(0, 1.1, 0.1)`, 4-connected largest components, a level map
  in float32, the 0.15 threshold and a divisor of 1000.

Inputs are float arrays in [0, 1] (trimaps on a 0..255 scale, compared with ==). The arithmetic
follows the input dtype as the official code does under numpy 2, whatever numpy is installed:

* float32, i.e. `u8.astype(float32) / 255` as the official `eval.py` reads saved PNGs;
* float64, i.e. the in-memory network output as the official `test.py` uses it.

The two conventions differ slightly (Conn by up to ~0.5 % on uint8 data, at alpha = 153/255).
uint8 inputs are converted with the eval.py convention.

Conn here runs one 4-connected labelling per level (no unused distance transforms) and gives
results identical to the official implementation, at more than 10x its speed.

Example::

    values = compute_metrics(pred, gt, trimap)     # {"sad": ..., "mse": ..., ...}
    summary = summarize([values, ...])             # means, counts, excluded images
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from p3m.errors import ShapeMismatchError

METRIC_KEYS: tuple[str, ...] = (
    "sad",
    "mse",
    "mad",
    "sad_t",
    "mse_t",
    "mad_t",
    "sad_fg",
    "sad_bg",
    "grad",
    "conn",
)
"""Result keys in the paper's column order (also the CSV column order of `p3m eval`)."""

WHOLE_IMAGE_KEYS: tuple[str, ...] = ("sad", "mse", "mad", "grad", "conn")
TRIMAP_KEYS: tuple[str, ...] = ("sad_t", "mse_t", "mad_t", "sad_fg", "sad_bg")

OFFICIAL_NAMES: Mapping[str, str] = {
    "sad": "SAD",
    "mse": "MSE",
    "mad": "MAD",
    "sad_t": "SAD_TRIMAP",
    "mse_t": "MSE_TRIMAP",
    "mad_t": "MAD_TRIMAP",
    "sad_fg": "SAD_FG",
    "sad_bg": "SAD_BG",
    "grad": "GRAD",
    "conn": "CONN",
}
"""Our keys -> the dictionary keys of the official eval.py."""

DISPLAY_NAMES: Mapping[str, str] = {
    "sad": "SAD",
    "mse": "MSE",
    "mad": "MAD",
    "sad_t": "SAD-T",
    "mse_t": "MSE-T",
    "mad_t": "MAD-T",
    "sad_fg": "SAD-FG",
    "sad_bg": "SAD-BG",
    "grad": "Grad",
    "conn": "Conn",
}

# dtype of each official result when the inputs are float32 (eval.py): SAD_FG/SAD_BG are float64
# because the official code multiplies by float64 weight maps.
EVAL_PY_RESULT_DTYPES: Mapping[str, type[np.floating]] = {
    key: (np.float64 if key in ("sad_fg", "sad_bg") else np.float32) for key in METRIC_KEYS
}

GRAD_SIGMA = 1.4
CONN_STEP = 0.1
CONN_THETA = 0.15


# --------------------------------------------------------------------------- input handling


def _as_alpha(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D H x W array, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} must be float32/float64 in [0, 1] or uint8, got {array.dtype}")
    return array


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_alpha(pred, "prediction")
    gt = _as_alpha(gt, "ground truth")
    if pred.shape != gt.shape:
        raise ShapeMismatchError(
            f"prediction {pred.shape[1]}x{pred.shape[0]} and ground truth "
            f"{gt.shape[1]}x{gt.shape[0]} differ in size"
        )
    return pred, gt


def _check_trimap(trimap: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    trimap = np.asarray(trimap)
    if trimap.ndim == 3 and trimap.shape[2] == 1:
        trimap = trimap[:, :, 0]
    if trimap.shape != shape:
        raise ShapeMismatchError(
            f"trimap shape {trimap.shape} differs from the matte shape {shape}"
        )
    return trimap


def _scalar(value: float, dtype: np.dtype) -> np.floating:
    """A Python number as numpy 2 would treat it next to an array of `dtype` (weak scalar)."""
    return dtype.type(value)


# --------------------------------------------------------------------------- SAD / MSE / MAD


def sad_mse_mad(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """Whole-image SAD (sum |p - g| / 1000), MSE (mean squared) and MAD (mean absolute)."""
    pred, gt = _check_pair(pred, gt)
    diff = pred - gt
    dtype = diff.dtype
    abs_sum = np.sum(np.abs(diff))
    sq_sum = np.sum(diff * diff)
    pixels = _scalar(pred.size, dtype)
    return (
        float(abs_sum / _scalar(1000, dtype)),
        float(sq_sum / pixels),
        float(abs_sum / pixels),
    )


def sad_mse_mad_trimap(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray
) -> tuple[float, float, float]:
    """SAD-T, MSE-T, MAD-T as the official code defines them (see the module docstring).

    The prediction is forced to 1 where trimap == 255 and 0 where trimap == 0; sums cover the
    whole image; MSE-T and MAD-T are divided by #(trimap == 128), falling back to the number of
    non-canonical values. inf/nan come back (without a warning) when that count is 0 too.
    """
    pred, gt = _check_pair(pred, gt)
    trimap = _check_trimap(trimap, pred.shape)
    foreground = trimap == 255
    background = trimap == 0
    forced = pred.copy()
    forced[foreground] = 1
    forced[background] = 0
    diff = forced - gt
    dtype = diff.dtype
    abs_sum = np.sum(np.abs(diff))
    sq_sum = np.sum(diff * diff)
    unknown = int(np.count_nonzero(trimap == 128))
    if unknown == 0:
        unknown = (
            trimap.size - int(np.count_nonzero(foreground)) - int(np.count_nonzero(background))
        )
    count = _scalar(unknown, dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            float(abs_sum / _scalar(1000, dtype)),
            float(sq_sum / count),
            float(abs_sum / count),
        )


def sad_fg_bg(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> tuple[float, float]:
    """SAD over trimap == 255 and over trimap == 0 (unforced prediction, / 1000, float64)."""
    pred, gt = _check_pair(pred, gt)
    trimap = _check_trimap(trimap, pred.shape)
    abs_diff = np.abs(pred - gt).astype(np.float64)
    # The official code multiplies by float64 0/1 weight maps and sums every pixel; doing the
    # same keeps the float64 pairwise-summation order.
    sad_fg = np.sum(abs_diff * (trimap == 255)) / 1000.0
    sad_bg = np.sum(abs_diff * (trimap == 0)) / 1000.0
    return float(sad_fg), float(sad_bg)


# --------------------------------------------------------------------------- Grad


def _gaussian_taps(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothing taps G and derivative taps D = -(x / sigma^2) G, radius int(4 sigma + 0.5).

    Computed with the same floating-point operations as scipy's `gaussian_filter1d` (which the
    official filters amount to), so the taps agree to the last bit.
    """
    radius = int(4.0 * sigma + 0.5)
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    smooth = np.exp(-0.5 / sigma2 * x**2)
    smooth = smooth / smooth.sum()
    derivative = (x * (-1.0 / sigma2)) * smooth
    return smooth, derivative


def _gradient_magnitude(alpha: np.ndarray, sigma: float) -> np.ndarray:
    smooth, derivative = _gaussian_taps(sigma)
    # The official filters are convolutions; correlate1d needs the taps reversed.
    smooth_c, derivative_c = smooth[::-1].copy(), derivative[::-1].copy()
    d_rows = np.empty(alpha.shape, np.float32)
    d_cols = np.empty(alpha.shape, np.float32)
    ndimage.correlate1d(alpha, derivative_c, axis=0, output=d_rows, mode="reflect")
    ndimage.correlate1d(d_rows, smooth_c, axis=1, output=d_rows, mode="reflect")
    ndimage.correlate1d(alpha, smooth_c, axis=0, output=d_cols, mode="reflect")
    ndimage.correlate1d(d_cols, derivative_c, axis=1, output=d_cols, mode="reflect")
    return np.sqrt(d_rows * d_rows + d_cols * d_cols)


def grad_error(pred: np.ndarray, gt: np.ndarray, sigma: float = GRAD_SIGMA) -> float:
    """Gradient error: sum (|grad p| - |grad g|)^2 / 10, Gaussian-derivative filters in float32."""
    pred, gt = _check_pair(pred, gt)
    difference = _gradient_magnitude(pred, sigma) - _gradient_magnitude(gt, sigma)
    return float(np.sum(difference * difference) / np.float32(10))


# --------------------------------------------------------------------------- Conn


def _at_least(values: np.ndarray, threshold: float) -> np.ndarray:
    """values >= threshold, compared exactly in float64 (numpy 2 semantics) without a copy.

    numpy 1.x would cast a float64 threshold down to float32 next to a float32 array, which
    changes the result for values equal to float32(t); the smallest float32 >= t gives the
    float64 answer with float32 arithmetic.
    """
    if values.dtype == np.float32:
        bound = np.float32(threshold)
        if float(bound) < threshold:
            bound = np.nextafter(bound, np.float32(np.inf))
        return values >= bound
    return values >= threshold


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the largest 4-connected component of a non-empty `mask`.

    Ties go to the component whose first pixel comes first in raster order, as with the
    official skimage label + regionprops + argmax (labels numbered in raster order).
    """
    box = _bounding_box(mask)
    cropped = mask[box]
    labels, count = ndimage.label(cropped)  # default structure: 4-connectivity in 2-D
    largest = np.zeros(mask.shape, dtype=bool)
    if count == 1:
        largest[box] = cropped
        return largest
    sizes = np.bincount(labels[cropped], minlength=count + 1)
    sizes[0] = 0
    is_largest = sizes == sizes.max()
    if np.count_nonzero(is_largest) == 1:
        best = int(np.argmax(is_largest))
    else:
        # A tie: the first pixel, in raster order, that belongs to any tied component belongs
        # to the winner. One pass, whatever the number of tied components, and independent
        # of the labeller's numbering (the crop preserves raster order).
        flat = labels.ravel()
        best = int(flat[int(np.argmax(is_largest[flat]))])
    np.equal(labels, best, out=largest[box])
    return largest


def conn_level_map(pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP) -> np.ndarray:
    """The float32 level map l of the official connectivity error (see `conn_error`)."""
    pred, gt = _check_pair(pred, gt)
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    thresholds = np.arange(0, 1 + step, step)
    level = np.ones(pred.shape, dtype=np.float32)  # pixels never assigned end at 1
    first = _at_least(pred, thresholds[1]) & _at_least(gt, thresholds[1])
    if not first.any():
        return level
    # Everything outside the bounding box of the first intersection is outside every component,
    # so it gets t_0 at the first level; the remaining work happens inside the box.
    box = _bounding_box(first)
    level[...] = np.float32(thresholds[0])
    pred_box, gt_box, level_box = pred[box], gt[box], level[box]
    level_box[...] = 1
    unassigned = np.ones(level_box.shape, dtype=bool)
    newly = np.empty_like(unassigned)
    both = first[box]
    for i in range(1, len(thresholds)):
        if i > 1:
            both = _at_least(pred_box, thresholds[i])
            both &= _at_least(gt_box, thresholds[i])
        if not both.any():
            # Intersections are nested, so every later level is empty too, and skipped.
            break
        largest = _largest_component(both)
        np.greater(unassigned, largest, out=newly)  # unassigned and not in the component
        np.copyto(level_box, np.float32(thresholds[i - 1]), where=newly)
        unassigned &= largest
        if not unassigned.any():
            break
    return level


def conn_error(
    pred: np.ndarray, gt: np.ndarray, step: float = CONN_STEP, theta: float = CONN_THETA
) -> float:
    """Connectivity error (official definition, step 0.1, threshold 0.15, / 1000).

    For each threshold t_i (i >= 1) of `np.arange(0, 1.1, step)`, pixels not yet assigned and
    outside the largest 4-connected component of {p >= t_i and g >= t_i} get the level
    float32(t_{i-1}); an empty intersection assigns nothing; unassigned pixels end at 1. Then
    phi = 1 - d [d >= theta] with d = alpha - level, and Conn = sum |phi_p - phi_g| / 1000.
    """
    pred, gt = _check_pair(pred, gt)
    level = conn_level_map(pred, gt, step)
    phi_pred = _phi(pred, level, theta)
    phi_gt = _phi(gt, level, theta)
    difference = phi_pred - phi_gt
    np.abs(difference, out=difference)
    return float(np.sum(difference) / _scalar(1000, difference.dtype))


def _phi(alpha: np.ndarray, level: np.ndarray, theta: float) -> np.ndarray:
    distance = alpha - level  # float32 - float32 stays float32; float64 widens level exactly
    dtype = distance.dtype
    keep = distance >= _scalar(theta, dtype)
    np.multiply(distance, keep, out=distance)
    return np.subtract(_scalar(1, dtype), distance, out=distance)


# --------------------------------------------------------------------------- all metrics


def compute_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    metrics: Iterable[str] | None = None,
) -> dict[str, float]:
    """All metrics for one prediction, keyed as in `METRIC_KEYS` (trimap keys only with a trimap).

    `pred` and `gt` are float32 or float64 H x W in [0, 1] (uint8 is divided by 255 in float32);
    `trimap` is H x W on the 0..255 scale. `metrics` restricts the keys computed (e.g. leave out
    "grad" and "conn" for a fast pass). Values are Python floats, possibly inf or nan.
    """
    pred, gt = _check_pair(pred, gt)
    wanted = set(METRIC_KEYS if metrics is None else metrics)
    unknown = wanted - set(METRIC_KEYS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {list(METRIC_KEYS)}")
    values: dict[str, float] = {}
    if wanted & {"sad", "mse", "mad"}:
        values["sad"], values["mse"], values["mad"] = sad_mse_mad(pred, gt)
    if trimap is not None:
        trimap = _check_trimap(trimap, pred.shape)
        if wanted & {"sad_t", "mse_t", "mad_t"}:
            values["sad_t"], values["mse_t"], values["mad_t"] = sad_mse_mad_trimap(pred, gt, trimap)
        if wanted & {"sad_fg", "sad_bg"}:
            values["sad_fg"], values["sad_bg"] = sad_fg_bg(pred, gt, trimap)
    if "grad" in wanted:
        values["grad"] = grad_error(pred, gt)
    if "conn" in wanted:
        values["conn"] = conn_error(pred, gt)
    return {key: values[key] for key in METRIC_KEYS if key in values and key in wanted}


# --------------------------------------------------------------------------- aggregation


@dataclass
class MetricSummary:
    """Means over images, with the images each mean left out because their value was not finite."""

    means: dict[str, float]
    counts: dict[str, int]
    excluded: dict[str, list[str]] = field(default_factory=dict)
    num_images: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (non-finite means, possible only with exclude_nonfinite=False, as strings)."""
        return {
            "num_images": self.num_images,
            "means": {key: _json_number(value) for key, value in self.means.items()},
            "counts": dict(self.counts),
            "excluded_nonfinite": {key: list(names) for key, names in self.excluded.items()},
        }


def _json_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def summarize(
    rows: Sequence[Mapping[str, float | None]],
    names: Sequence[str] | None = None,
    accumulate: Literal["float64", "eval_py"] = "float64",
    exclude_nonfinite: bool = True,
) -> MetricSummary:
    """Per-metric means over `rows` (dicts as returned by `compute_metrics`), in the given order.

    Missing or None values are not counted. Non-finite values (inf/nan from trimaps without
    unknown pixels) are left out of the mean and listed in `excluded` by image name (`names`, or
    the row index), unless `exclude_nonfinite=False`, which lets them propagate as the official
    scripts do. `accumulate="eval_py"` reproduces the official eval.py aggregate under numpy 2:
    a running sum in float32 for the float32 metrics (float64 for SAD-FG/SAD-BG), divided by the
    count in the same type. "float64" is a float64 running sum.
    """
    if accumulate not in ("float64", "eval_py"):
        raise ValueError(f"accumulate must be 'float64' or 'eval_py', got {accumulate!r}")
    labels = list(names) if names is not None else [str(i) for i in range(len(rows))]
    if len(labels) != len(rows):
        raise ValueError(f"{len(labels)} names for {len(rows)} rows")
    means: dict[str, float] = {}
    counts: dict[str, int] = {}
    excluded: dict[str, list[str]] = {}
    for key in METRIC_KEYS:
        dtype = EVAL_PY_RESULT_DTYPES[key] if accumulate == "eval_py" else np.float64
        total = dtype(0.0)
        count = 0
        left_out: list[str] = []
        for label, row in zip(labels, rows, strict=True):
            value = row.get(key)
            if value is None:
                continue
            if exclude_nonfinite and not math.isfinite(value):
                left_out.append(label)
                continue
            with np.errstate(invalid="ignore", over="ignore"):
                total = dtype(total + dtype(value))
            count += 1
        if count == 0 and not left_out:
            continue
        counts[key] = count
        if left_out:
            excluded[key] = left_out
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            means[key] = float(total / dtype(count)) if count else math.nan
    return MetricSummary(means=means, counts=counts, excluded=excluded, num_images=len(rows))
