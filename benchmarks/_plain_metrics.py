"""A plain, line-by-line implementation of the P3M metric definitions (benchmark baseline only).

Written from the definitions in tests/data/reference/metrics/README.md (section 4), the way
the official evaluation computes them: skimage label + regionprops at every Conn level, with the
per-level distance maps and lambda map that the official code computes and never uses. It is
kept out of the library on purpose: `benchmarks/bench_metrics.py` times `p3m.evaluation.metrics`
against it and checks that both give identical numbers.

Scalar arithmetic is written with explicit numpy types so the results follow numpy 2 promotion
rules (as the official reference values do) under numpy 1.x as well.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure


def plain_sad_mse_mad(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    dtype = np.result_type(pred, gt).type
    pixels = pred.shape[0] * pred.shape[1]
    sad = np.sum(np.abs(pred - gt)) / dtype(1000)
    mse = np.sum((pred - gt) ** 2) / dtype(pixels)
    mad = np.sum(np.abs(pred - gt)) / dtype(pixels)
    return float(sad), float(mse), float(mad)


def plain_sad_mse_mad_trimap(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray
) -> tuple[float, float, float]:
    dtype = np.result_type(pred, gt).type
    forced = pred.copy()
    forced[trimap == 255] = 1.0
    forced[trimap == 0] = 0.0
    unknown = int(np.sum(trimap == 128))
    if unknown == 0:
        unknown = trimap.size - int(np.sum(trimap == 255)) - int(np.sum(trimap == 0))
    sad = np.sum(np.abs(forced - gt)) / dtype(1000)
    with np.errstate(divide="ignore", invalid="ignore"):
        mse = np.sum((forced - gt) ** 2) / dtype(unknown)
        mad = np.sum(np.abs(forced - gt)) / dtype(unknown)
    return float(sad), float(mse), float(mad)


def plain_sad_fg_bg(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> tuple[float, float]:
    weight_fg = np.zeros(pred.shape)
    weight_bg = np.zeros(pred.shape)
    weight_unknown = np.zeros(pred.shape)
    weight_fg[trimap == 255] = 1.0
    weight_bg[trimap == 0] = 1.0
    weight_unknown[trimap == 128] = 1.0
    sad_fg = np.sum(np.abs(pred - gt) * weight_fg) / 1000.0
    sad_bg = np.sum(np.abs(pred - gt) * weight_bg) / 1000.0
    _sad_unknown = np.sum(np.abs(pred - gt) * weight_unknown) / 1000.0  # computed, never used
    return float(sad_fg), float(sad_bg)


def plain_grad(pred: np.ndarray, gt: np.ndarray, sigma: float = 1.4) -> float:
    pred_rows = np.zeros(pred.shape, dtype=np.float32)
    pred_cols = np.zeros(pred.shape, dtype=np.float32)
    gt_rows = np.zeros(gt.shape, dtype=np.float32)
    gt_cols = np.zeros(gt.shape, dtype=np.float32)
    ndimage.gaussian_filter(pred, sigma, order=[1, 0], output=pred_rows, mode="reflect")
    ndimage.gaussian_filter(pred, sigma, order=[0, 1], output=pred_cols, mode="reflect")
    ndimage.gaussian_filter(gt, sigma, order=[1, 0], output=gt_rows, mode="reflect")
    ndimage.gaussian_filter(gt, sigma, order=[0, 1], output=gt_cols, mode="reflect")
    pred_magnitude = np.sqrt(pred_rows**2 + pred_cols**2)
    gt_magnitude = np.sqrt(gt_rows**2 + gt_cols**2)
    error_map = np.square(pred_magnitude - gt_magnitude)
    return float(np.sum(error_map) / np.float32(10))


def plain_conn(pred: np.ndarray, gt: np.ndarray, step: float = 0.1) -> float:
    thresholds = np.arange(0, 1 + step, step)
    level_map = -1 * np.ones(pred.shape, dtype=np.float32)
    dist_maps = np.zeros((pred.shape[0], pred.shape[1], len(thresholds)), dtype=np.float32)
    # Compare in float64 as numpy 2 does for a float32 array against a float64 scalar.
    pred64 = pred.astype(np.float64)
    gt64 = gt.astype(np.float64)
    for i in range(1, len(thresholds)):
        pred_thresh = pred64 >= thresholds[i]
        gt_thresh = gt64 >= thresholds[i]
        intersection = (pred_thresh & gt_thresh).astype(np.int64)
        labels = measure.label(intersection, connectivity=1)
        properties = measure.regionprops(labels)
        if len(properties) == 0:
            continue
        areas = np.array([region.area for region in properties])
        largest = properties[int(np.argmax(areas))].label
        omega = np.zeros(pred.shape, dtype=np.int64)
        omega[labels == largest] = 1
        flag = ((level_map == -1) & (omega == 0)).astype(np.int64)
        level_map[flag == 1] = thresholds[i - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = ndimage.distance_transform_edt(omega == 0)
            dist_maps[:, :, i] = distance / distance.max()
    level_map[level_map == -1] = 1
    _lambda_map = np.ones(pred.shape, dtype=np.float32)  # computed, never used
    pred_distance = pred - level_map
    gt_distance = gt - level_map
    dtype = pred_distance.dtype.type
    pred_phi = dtype(1) - pred_distance * (pred_distance >= dtype(0.15))
    gt_phi = dtype(1) - gt_distance * (gt_distance >= dtype(0.15))
    return float(np.sum(np.abs(pred_phi - gt_phi)) / dtype(1000))
