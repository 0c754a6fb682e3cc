"""p3m.evaluation.metrics against the official values in tests/data/reference/metrics.

Every case, both input conventions, every trimap; tolerances from the reference README §7:
rtol 1e-6 / atol 1e-9, non-finite values exactly, the identical case exactly 0.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from skimage import measure

from p3m.errors import ShapeMismatchError
from p3m.evaluation.metrics import (
    METRIC_KEYS,
    OFFICIAL_NAMES,
    TRIMAP_KEYS,
    WHOLE_IMAGE_KEYS,
    _at_least,
    _largest_component,
    compute_metrics,
    conn_error,
    conn_level_map,
    grad_error,
    summarize,
)

METRICS_DIR = Path(__file__).resolve().parent / "data" / "reference" / "metrics"
EXPECTED = json.loads((METRICS_DIR / "expected.json").read_text())
CASES = sorted(EXPECTED["cases"])
CONVENTIONS = ("p3mnet_eval_py", "p3mv1_test_py")


@cache
def load_case(name: str) -> dict[str, np.ndarray]:
    with np.load(METRICS_DIR / EXPECTED["cases"][name]["file"]) as data:
        return {key: data[key] for key in data.files}


def convention_inputs(name: str, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """pred, gt exactly as the official driver of `convention` builds them (README §2)."""
    arrays = load_case(name)
    if convention == "p3mnet_eval_py":
        return arrays["pred_u8"].astype(np.float32) / 255.0, arrays["gt"].astype(np.float32) / 255.0
    pred = (
        arrays["pred_f32"].astype(np.float64) if "pred_f32" in arrays else arrays["pred_u8"] / 255.0
    )
    return pred, arrays["gt"] / 255.0


def trimap_input(name: str, convention: str, trimap: str) -> np.ndarray:
    array = load_case(name)[EXPECTED["cases"][name]["trimaps"][trimap]["array"]]
    return array.astype(np.float32) if convention == "p3mnet_eval_py" else array


def expected_value(raw: float | str) -> float:
    return float(raw)  # "nan" / "inf" strings parse to the non-finite floats


def assert_matches(actual: float, expected: float, label: str) -> None:
    if not math.isfinite(expected):
        assert (math.isnan(expected) and math.isnan(actual)) or actual == expected, (
            f"{label}: got {actual}, official {expected}"
        )
        return
    assert math.isfinite(actual), f"{label}: got {actual}, official {expected}"
    assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9), f"{label}: official {expected}"


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", CASES)
def test_every_case_every_trimap_matches_official(name: str, convention: str) -> None:
    pred, gt = convention_inputs(name, convention)
    results = EXPECTED["cases"][name]["results"][convention]
    whole = compute_metrics(pred, gt)
    assert set(whole) == set(WHOLE_IMAGE_KEYS)
    for key in WHOLE_IMAGE_KEYS:
        assert_matches(
            whole[key],
            expected_value(results["whole"][OFFICIAL_NAMES[key]]),
            f"{name}/{convention}/{key}",
        )
    assert results["trimap"], "every case has at least one trimap"
    for trimap_name, expected in results["trimap"].items():
        trimap = trimap_input(name, convention, trimap_name)
        values = compute_metrics(pred, gt, trimap, metrics=(*TRIMAP_KEYS, "sad"))
        assert set(values) == {*TRIMAP_KEYS, "sad"}
        for key in TRIMAP_KEYS:
            assert_matches(
                values[key],
                expected_value(expected[OFFICIAL_NAMES[key]]),
                f"{name}/{convention}/{trimap_name}/{key}",
            )


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_identical_prediction_is_exactly_zero(convention: str) -> None:
    pred, gt = convention_inputs("real_identical", convention)
    trimap = trimap_input("real_identical", convention, "k15")
    values = compute_metrics(pred, gt, trimap)
    assert set(values) == set(METRIC_KEYS)
    assert all(value == 0.0 for value in values.values()), values


def test_nonfinite_cases_are_reproduced() -> None:
    """The three official nan/inf situations come back, without a RuntimeWarning."""
    seen = set()
    for name, case in EXPECTED["cases"].items():
        for trimap_name, expected in case["results"]["p3mnet_eval_py"]["trimap"].items():
            if all(math.isfinite(float(v)) for v in expected.values()):
                continue
            pred, gt = convention_inputs(name, "p3mnet_eval_py")
            with np.errstate(all="raise"):
                values = compute_metrics(
                    pred, gt, trimap_input(name, "p3mnet_eval_py", trimap_name), metrics=TRIMAP_KEYS
                )
            for key in ("mse_t", "mad_t"):
                assert_matches(values[key], float(expected[OFFICIAL_NAMES[key]]), f"{name}/{key}")
            assert math.isfinite(values["sad_t"])
            seen.add((name, trimap_name))
    assert {("edge_all_bg", "k15"), ("edge_all_fg", "k15"), ("edge_no_transition", "bin")} <= seen


def test_conventions_differ_at_153_as_documented() -> None:
    """Conn depends on the dtype exactly at alpha = 153/255 (README quirk 8)."""
    values = np.full((8, 8), 153, np.uint8)
    values[2:5, 2:5] = 200
    gt = np.full((8, 8), 255, np.uint8)
    as_f32 = conn_level_map(values.astype(np.float32) / 255.0, gt.astype(np.float32) / 255.0)
    as_f64 = conn_level_map(values / 255.0, gt / 255.0)
    # float32(153/255) >= 0.6000000000000001, float64(153/255) is not.
    assert as_f32[0, 0] == np.float32(0.6)
    assert as_f64[0, 0] == np.float32(0.5)


def test_threshold_comparison_is_float64_exact() -> None:
    thresholds = np.arange(0, 1.1, 0.1)
    candidates = np.concatenate(
        [np.nextafter(np.float32(t), [np.float32(-1), np.float32(2)]) for t in thresholds]
        + [np.float32(thresholds)]
    ).astype(np.float32)
    for threshold in thresholds:
        np.testing.assert_array_equal(
            _at_least(candidates, threshold), candidates.astype(np.float64) >= threshold
        )


def _skimage_largest(mask: np.ndarray) -> np.ndarray:
    labels = measure.label(mask.astype(int), connectivity=1)
    regions = measure.regionprops(labels)
    largest = regions[int(np.argmax([region.area for region in regions]))].label
    return labels == largest


def test_largest_component_matches_skimage_including_ties() -> None:
    rng = np.random.default_rng(7)
    checked_ties = 0
    for trial in range(300):
        shape = (int(rng.integers(1, 12)), int(rng.integers(1, 12)))
        mask = rng.random(shape) < rng.uniform(0.2, 0.7)
        if not mask.any():
            continue
        expected = _skimage_largest(mask)
        np.testing.assert_array_equal(_largest_component(mask), expected, err_msg=f"trial {trial}")
        labels = measure.label(mask.astype(int), connectivity=1)
        areas = np.bincount(labels.ravel())[1:]
        checked_ties += int((areas == areas.max()).sum() > 1)
    assert checked_ties > 20
    # A tie where the labeller could be fooled: two 2-pixel parts, the first starting later in
    # its column but earlier in raster order.
    mask = np.array([[0, 0, 1], [1, 0, 1], [1, 0, 0]], bool)
    np.testing.assert_array_equal(_largest_component(mask), [[0, 0, 1], [0, 0, 1], [0, 0, 0]])


def _straightforward_conn(pred: np.ndarray, gt: np.ndarray) -> float:
    """The definition, level by level with skimage (README §4), for exact comparison."""
    thresholds = np.arange(0, 1.1, 0.1)
    level = np.full(pred.shape, -1, np.float32)
    for i in range(1, len(thresholds)):
        both = (pred.astype(np.float64) >= thresholds[i]) & (gt.astype(np.float64) >= thresholds[i])
        if not both.any():
            continue
        level[(level == -1) & ~_skimage_largest(both)] = thresholds[i - 1]
    level[level == -1] = 1
    dtype = np.result_type(pred, level).type
    d_pred, d_gt = pred - level, gt - level
    phi_pred = dtype(1) - d_pred * (d_pred >= dtype(0.15))
    phi_gt = dtype(1) - d_gt * (d_gt >= dtype(0.15))
    return float(np.sum(np.abs(phi_pred - phi_gt)) / dtype(1000))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conn_equals_the_straightforward_definition_on_random_mattes(dtype: type) -> None:
    rng = np.random.default_rng(3)
    for trial in range(25):
        shape = (int(rng.integers(5, 40)), int(rng.integers(5, 40)))
        # Blocky mattes with many components, ties and values exactly at the thresholds.
        coarse = rng.integers(0, 256, (shape[0] // 3 + 1, shape[1] // 3 + 1)).astype(np.uint8)
        gt_u8 = np.kron(coarse, np.ones((3, 3), np.uint8))[: shape[0], : shape[1]]
        noise = rng.integers(-60, 61, shape)
        pred_u8 = np.clip(gt_u8.astype(int) + noise * (rng.random(shape) < 0.3), 0, 255).astype(
            np.uint8
        )
        pred, gt = pred_u8.astype(dtype) / dtype(255), gt_u8.astype(dtype) / dtype(255)
        assert conn_error(pred, gt) == _straightforward_conn(pred, gt), f"trial {trial}"


def test_conn_on_constant_and_empty_inputs() -> None:
    zeros = np.zeros((6, 7), np.float32)
    ones = np.ones((6, 7), np.float32)
    assert conn_error(zeros, zeros) == 0.0  # every level empty: levels stay at 1
    assert conn_error(ones, ones) == 0.0
    # Empty intersection at every level assigns nothing (quirk 7): all-background gt gives 0.
    assert conn_error(ones, zeros) == 0.0
    # Row 0 of gt is background: it leaves the component at t_1 and gets level 0, so there
    # phi_p = 1 - 1 = 0 and phi_g = 1; elsewhere everything stays at level 1.
    gt = ones.copy()
    gt[0] = 0
    np.testing.assert_array_equal(conn_level_map(ones, gt)[:, 0], [0, 1, 1, 1, 1, 1])
    assert conn_error(ones, gt) == pytest.approx(7 / 1000)


def test_uint8_inputs_use_eval_py_convention() -> None:
    arrays = load_case("syn_holes")
    from_u8 = compute_metrics(arrays["pred_u8"], arrays["gt"], arrays["trimap_k15"])
    pred, gt = convention_inputs("syn_holes", "p3mnet_eval_py")
    assert from_u8 == compute_metrics(pred, gt, arrays["trimap_k15"].astype(np.float32))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ShapeMismatchError, match="differ"):
        compute_metrics(np.zeros((4, 5), np.float32), np.zeros((5, 4), np.float32))
    with pytest.raises(ShapeMismatchError, match="trimap"):
        compute_metrics(
            np.zeros((4, 5), np.float32), np.zeros((4, 5), np.float32), np.zeros((4, 4))
        )
    with pytest.raises(TypeError, match="float32"):
        grad_error(np.zeros((4, 5), np.int32), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.float32), metrics=["iou"])


# --------------------------------------------------------------------------- aggregates


def _aggregate_rows(convention: str) -> tuple[list[str], list[dict[str, float]]]:
    aggregate = EXPECTED["aggregate"]
    names = sorted(aggregate["cases"])  # the official drivers go in sorted file-name order
    rows = []
    for name in names:
        pred, gt = convention_inputs(name, convention)
        rows.append(compute_metrics(pred, gt, trimap_input(name, convention, aggregate["trimap"])))
    return names, rows


def test_eval_py_aggregate_float32_running_sum() -> None:
    names, rows = _aggregate_rows("p3mnet_eval_py")
    summary = summarize(rows, names, accumulate="eval_py")
    official = EXPECTED["aggregate"]["p3mnet_eval_py_evaluate_folder"]
    assert summary.num_images == len(names) == 9
    for key in METRIC_KEYS:
        assert summary.counts[key] == 9
        assert summary.means[key] == pytest.approx(
            official[OFFICIAL_NAMES[key]], rel=1e-6, abs=1e-12
        )
    assert summary.excluded == {}
    # The float32 running sum is what the official script does, not a float64 mean of the values.
    running = np.float32(0)
    for row in rows:
        running = np.float32(running + np.float32(row["grad"]))
    assert summary.means["grad"] == float(running / np.float32(9))


def test_test_py_aggregate_float64() -> None:
    names, rows = _aggregate_rows("p3mv1_test_py")
    summary = summarize(rows, names)
    logged = EXPECTED["aggregate"]["p3mv1_test_py_test_p3m10k"]["logged_means"]
    for key in METRIC_KEYS:
        assert summary.means[key] == pytest.approx(logged[OFFICIAL_NAMES[key]], rel=1e-6)


def test_aggregate_reports_nonfinite_exclusions() -> None:
    names = ["a.png", "b.png", "c.png"]
    rows = [
        {"sad": 1.0, "mse_t": 0.5},
        {"sad": 3.0, "mse_t": math.inf},
        {"sad": 5.0, "mse_t": math.nan, "grad": 2.0},
    ]
    summary = summarize(rows, names)
    assert summary.means["sad"] == 3.0 and summary.counts["sad"] == 3
    assert summary.means["mse_t"] == 0.5 and summary.counts["mse_t"] == 1
    assert summary.excluded == {"mse_t": ["b.png", "c.png"]}
    assert summary.means["grad"] == 2.0 and summary.counts["grad"] == 1
    assert "conn" not in summary.means
    as_json = summary.to_dict()
    assert as_json["excluded_nonfinite"] == {"mse_t": ["b.png", "c.png"]}
    json.dumps(as_json, allow_nan=False)
    propagated = summarize(rows, names, exclude_nonfinite=False)
    assert math.isnan(propagated.means["mse_t"]) and propagated.counts["mse_t"] == 3
    assert propagated.to_dict()["means"]["mse_t"] == "nan"
    only_bad = summarize([{"mse_t": math.inf}], ["x.png"])
    assert math.isnan(only_bad.means["mse_t"]) and only_bad.counts["mse_t"] == 0
