"""Trimap-based traditional baselines: quality on synthetic portraits, exact known regions, budget, runs, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p3m.cli import app
from p3m.data.layout import find_samples
from p3m.data.synthetic import make_portrait, write_synthetic_dataset
from p3m.data.trimap import trimap_from_alpha
from p3m.errors import BaselineError
from p3m.evaluation.baselines import (
    BASELINES,
    budget_shape,
    estimate_alpha_baseline,
    run_baseline,
)
from p3m.evaluation.folder import evaluate_folder
from p3m.evaluation.metrics import sad_mse_mad

runner = CliRunner()


@pytest.fixture(scope="module")
def portrait() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 72 x 88 synthetic portrait: image (uint8), trimap {0, 128, 255}, ground truth [0, 1]."""
    sample = make_portrait(np.random.default_rng(3), 72, 88)
    trimap = trimap_from_alpha(sample.alpha, 7)
    return sample.image, trimap, sample.alpha.astype(np.float32) / 255


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=1, n_val=2, min_size=64, max_size=80, seed=1)
    return root


def trivial_sads(trimap: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """SAD of the binarised trimap and of 0.5 everywhere in the unknown band."""
    binarised = (trimap >= 128).astype(np.float32)
    half = np.where(trimap == 255, 1.0, np.where(trimap == 0, 0.0, 0.5)).astype(np.float32)
    return sad_mse_mad(binarised, gt)[0], sad_mse_mad(half, gt)[0]


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_beats_trivial_predictions_and_keeps_known_regions(method, portrait) -> None:
    image, trimap, gt = portrait
    result = estimate_alpha_baseline(image, trimap, method, max_pixels=None)
    alpha = result.alpha
    assert alpha.dtype == np.float32 and alpha.shape == gt.shape and not result.resized
    assert np.all(alpha[trimap == 255] == 1.0) and np.all(alpha[trimap == 0] == 0.0)
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    sad = sad_mse_mad(alpha, gt)[0]
    binarised, half = trivial_sads(trimap, gt)
    assert sad < 0.6 * half < binarised, (method, sad, half, binarised)


def test_budget_solves_smaller_then_reimposes_known_regions(portrait) -> None:
    image, trimap, gt = portrait
    budget = 40 * 48
    result = estimate_alpha_baseline(image, trimap, "cf", max_pixels=budget)
    assert result.resized and result.shape == gt.shape
    small_h, small_w = result.solved_shape
    assert small_h * small_w <= budget and small_h < gt.shape[0]
    assert result.alpha.shape == gt.shape
    assert np.all(result.alpha[trimap == 255] == 1.0) and np.all(result.alpha[trimap == 0] == 0.0)
    full = estimate_alpha_baseline(image, trimap, "cf", max_pixels=None)
    assert not np.array_equal(result.alpha, full.alpha)  # really solved at the smaller size
    assert sad_mse_mad(result.alpha, gt)[0] < 0.7 * trivial_sads(trimap, gt)[1]


def test_budget_shape() -> None:
    assert budget_shape(1080, 1620, None) == (1080, 1620)
    assert budget_shape(100, 100, 20_000) == (100, 100)
    height, width = budget_shape(1080, 1620, 1_000_000)
    assert height * width <= 1_000_000 and height * width > 0.99e6
    assert abs(width / height - 1.5) < 0.01
    thin_h, thin_w = budget_shape(1000, 3, 100)  # extreme aspect: at least one pixel wide
    assert thin_w >= 1 and thin_h * thin_w <= 100


def test_degenerate_trimaps() -> None:
    image = np.full((20, 30, 3), 90, np.uint8)
    known = np.zeros((20, 30), np.uint8)
    known[5:15, 10:20] = 255
    assert np.array_equal(estimate_alpha_baseline(image, known, "knn").alpha, known / 255.0)
    only_fg = np.full((20, 30), 128, np.uint8)
    only_fg[:5] = 255
    assert np.all(estimate_alpha_baseline(image, only_fg, "cf").alpha == 1.0)
    with pytest.raises(BaselineError, match="no known pixel"):
        estimate_alpha_baseline(image, np.full((20, 30), 128, np.uint8), "cf")
    with pytest.raises(BaselineError, match="unknown baseline"):
        estimate_alpha_baseline(image, known, "dim")


def test_run_reports_bad_image_and_scores_like_eval(dataset, tmp_path) -> None:
    samples = find_samples(dataset, "P3M-500-P")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    samples = [samples[0], dataclasses.replace(samples[1], image=bad)]
    out = tmp_path / "cf"
    progress: list[tuple[int, int, str]] = []
    run = run_baseline(
        "cf", samples, out, max_pixels=50 * 50, set_name="P3M-500-P",
        on_progress=lambda *args: progress.append(args),
    )
    assert [p[0] for p in progress] == [1, 2]
    assert list(run.failed) == [samples[1].name] and "broken.png" in run.failed[samples[1].name]
    assert sorted(p.name for p in out.glob("*.png")) == [f"{samples[0].name}.png"]
    assert run.resized == [samples[0].name]
    record = run.to_json_dict()
    assert record["budget"]["max_pixels"] == 2500 and record["budget"]["num_resized"] == 1
    assert record["trimaps"]["source"] == "dataset" and record["set"] == "P3M-500-P"
    assert record["skipped"][0]["name"] == samples[1].name
    # The baseline's own scores are exactly what `p3m eval` gives on its output folder.
    evaluation = evaluate_folder(out, samples[0].alpha.parent, samples[0].trimap.parent, workers=1)
    assert record["means"] == evaluation.summary.to_dict()["means"]
    assert record["num_evaluated"] == 1


def test_rwp_needs_trimaps_and_generates_them_flagged(dataset, tmp_path) -> None:
    samples = find_samples(dataset, "RWP")[:1]
    assert samples[0].trimap is None
    with pytest.raises(BaselineError, match="no trimap"):
        run_baseline("cf", samples, tmp_path / "a")
    run = run_baseline("cf", samples, tmp_path / "b", trimap_kernel=9, set_name="RWP")
    generated = tmp_path / "b" / "trimap" / f"{samples[0].name}.png"
    assert generated.is_file()
    record = run.to_json_dict()
    assert record["trimaps"]["source"] == "generated" and record["trimaps"]["kernel_size"] == 9
    assert "gen_trimap_with_dilate" in record["trimaps"]["note"]
    assert record["counts"]["sad_t"] == 1


def test_cli_baseline_then_table(dataset, tmp_path) -> None:
    outputs = {}
    for method in ("cf", "rw"):
        out = tmp_path / method
        result = runner.invoke(
            app,
            ["baseline", method, "--data-root", str(dataset), "--set", "P3M-500-NP", "--out", str(out)],
        )
        assert result.exit_code == 0, result.output
        record = json.loads((out / "metrics.json").read_text())
        assert record["method"] == method and record["set"] == "P3M-500-NP"
        assert record["num_evaluated"] == 2 and (out / "metrics.csv").is_file()
        outputs[method] = record
    markdown = tmp_path / "table.md"
    result = runner.invoke(
        app,
        ["table", str(tmp_path / "cf" / "metrics.json"), str(tmp_path / "rw" / "metrics.json"),
         "--markdown", str(markdown)],
    )
    assert result.exit_code == 0, result.output
    text = markdown.read_text()
    assert "P3M-500-NP" in text and "| CF |" in text and "| RW |" in text
    best = min(outputs, key=lambda m: round(outputs[m]["means"]["sad"], 2))
    assert f"**{outputs[best]['means']['sad']:.2f}**" in text


def test_cli_baseline_rwp_says_trimaps_are_generated(dataset, tmp_path) -> None:
    result = runner.invoke(
        app,
        ["baseline", "sm", "--data-root", str(dataset), "--set", "RWP", "--out", str(tmp_path),
         "--limit", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "no trimaps" in result.output and "gen_trimap_with_dilate" in result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["trimaps"]["source"] == "generated"


def test_resumed_run_reuses_predictions_and_scores_them_the_same(dataset, tmp_path) -> None:
    samples = find_samples(dataset, "RWP")
    first = run_baseline("cf", samples, tmp_path, trimap_kernel=9, max_pixels=50 * 50)
    (tmp_path / f"{samples[1].name}.png").unlink()  # one prediction lost since: solved again
    (tmp_path / "trimap" / f"{samples[0].name}.png").unlink()  # a generated trimap lost: made again
    events = []
    again = run_baseline(
        "cf", samples, tmp_path, trimap_kernel=9, max_pixels=50 * 50, skip_existing=True, on_event=events.append
    )
    assert again.solved[samples[0].name] == {"reused": True} and "seconds" in again.solved[samples[1].name]
    assert events[0].kept == 1 and events[0].pending == 1
    assert again.evaluation.rows == first.evaluation.rows
