"""`p3m eval` end to end on reference cases written as PNG folders."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from p3m.cli import app
from p3m.errors import DatasetError
from p3m.evaluation.folder import CSV_HEADER, evaluate_folder
from p3m.evaluation.metrics import METRIC_KEYS, OFFICIAL_NAMES, TRIMAP_KEYS
from p3m.io import write_png

METRICS_DIR = Path(__file__).resolve().parent / "data" / "reference" / "metrics"
EXPECTED = json.loads((METRICS_DIR / "expected.json").read_text())
AGGREGATE = EXPECTED["aggregate"]
# Cases for the special behaviours: nan (no unknown pixels), inf (binary trimap), and a resized
# trimap with non-canonical values that the official eval keeps as they are.
SPECIAL = {"edge_all_bg": "k15", "edge_no_transition": "bin", "real_resized_trimap": "lin"}

runner = CliRunner()


def write_case_folders(root: Path, cases: dict[str, str]) -> tuple[Path, Path, Path]:
    pred_dir, gt_dir, trimap_dir = root / "pred", root / "gt", root / "trimap"
    for name, trimap in cases.items():
        with np.load(METRICS_DIR / EXPECTED["cases"][name]["file"]) as arrays:
            write_png(pred_dir / f"{name}.png", arrays["pred_u8"])
            write_png(gt_dir / f"{name}.png", arrays["gt"])
            array_name = EXPECTED["cases"][name]["trimaps"][trimap]["array"]
            write_png(trimap_dir / f"{name}.png", arrays[array_name])
    return pred_dir, gt_dir, trimap_dir


def read_csv(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = {row[0]: dict(zip(header, row, strict=True)) for row in reader}
    return header, rows


def check_value(text: str, expected: float | str, label: str) -> None:
    expected = float(expected)
    actual = float(text)
    if math.isfinite(expected):
        assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9), label
    else:
        assert (math.isnan(actual) and math.isnan(expected)) or actual == expected, label


@pytest.fixture(scope="module")
def aggregate_folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    cases = {name: AGGREGATE["trimap"] for name in AGGREGATE["cases"]}
    return write_case_folders(tmp_path_factory.mktemp("aggregate"), cases)


def test_cli_csv_and_json_match_official_values(
    aggregate_folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pred_dir, gt_dir, trimap_dir = aggregate_folders
    csv_path, json_path = tmp_path / "out" / "metrics.csv", tmp_path / "out" / "summary.json"
    result = runner.invoke(
        app,
        [
            "eval",
            str(pred_dir),
            str(gt_dir),
            "--trimap-dir",
            str(trimap_dir),
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "9 images evaluated, 0 skipped" in result.stdout
    header, rows = read_csv(csv_path)
    assert ",".join(header) == "name,sad,mse,mad,sad_t,mse_t,mad_t,sad_fg,sad_bg,grad,conn"
    assert sorted(rows) == sorted(AGGREGATE["cases"])
    for name, row in rows.items():
        results = EXPECTED["cases"][name]["results"]["p3mnet_eval_py"]
        expected = {**results["whole"], **results["trimap"][AGGREGATE["trimap"]]}
        for key in METRIC_KEYS:
            check_value(row[key], expected[OFFICIAL_NAMES[key]], f"{name}/{key}")
    summary = json.loads(json_path.read_text())
    official = AGGREGATE["p3mnet_eval_py_evaluate_folder"]
    for key in METRIC_KEYS:
        assert summary["means"][key] == pytest.approx(official[OFFICIAL_NAMES[key]], rel=1e-6)
        assert summary["counts"][key] == 9
    assert summary["num_evaluated"] == 9 and summary["skipped"] == []
    # Written atomically: no temporary files left beside the outputs.
    assert sorted(p.name for p in csv_path.parent.iterdir()) == ["metrics.csv", "summary.json"]


def test_without_trimaps_the_trimap_columns_are_empty(
    aggregate_folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pred_dir, gt_dir, _ = aggregate_folders
    csv_path = tmp_path / "metrics.csv"
    result = runner.invoke(
        app, ["eval", str(pred_dir), str(gt_dir), "--csv", str(csv_path), "-j", "1"]
    )
    assert result.exit_code == 0, result.output
    _, rows = read_csv(csv_path)
    for name, row in rows.items():
        assert all(row[key] == "" for key in TRIMAP_KEYS)
        whole = EXPECTED["cases"][name]["results"]["p3mnet_eval_py"]["whole"]
        check_value(row["conn"], whole["CONN"], f"{name}/conn")


def test_results_do_not_depend_on_worker_count(aggregate_folders: tuple[Path, Path, Path]) -> None:
    pred_dir, gt_dir, trimap_dir = aggregate_folders
    single = evaluate_folder(pred_dir, gt_dir, trimap_dir, workers=1)
    pooled = evaluate_folder(pred_dir, gt_dir, trimap_dir, workers=2)
    assert single.rows == pooled.rows
    assert single.summary == pooled.summary
    assert json.dumps(single.to_json_dict()) == json.dumps(pooled.to_json_dict())


def test_module_entry_point_in_a_subprocess(
    aggregate_folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pred_dir, gt_dir, trimap_dir = aggregate_folders
    csv_path = tmp_path / "metrics.csv"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "p3m.cli",
            "eval",
            str(pred_dir),
            str(gt_dir),
            "--trimap-dir",
            str(trimap_dir),
            "--csv",
            str(csv_path),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "SAD-T" in completed.stdout and "Conn" in completed.stdout
    _, rows = read_csv(csv_path)
    row = rows["syn_holes"]
    expected = EXPECTED["cases"]["syn_holes"]["results"]["p3mnet_eval_py"]
    check_value(row["sad_t"], expected["trimap"]["k15"]["SAD_TRIMAP"], "syn_holes/sad_t")
    check_value(row["grad"], expected["whole"]["GRAD"], "syn_holes/grad")


def test_nonfinite_values_and_raw_trimaps(tmp_path: Path) -> None:
    pred_dir, gt_dir, trimap_dir = write_case_folders(tmp_path, SPECIAL)
    csv_path, json_path = tmp_path / "metrics.csv", tmp_path / "summary.json"
    result = runner.invoke(
        app,
        [
            "eval",
            str(pred_dir),
            str(gt_dir),
            "--trimap-dir",
            str(trimap_dir),
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
            "-j",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    _, rows = read_csv(csv_path)
    for name, trimap in SPECIAL.items():
        results = EXPECTED["cases"][name]["results"]["p3mnet_eval_py"]
        expected = {**results["whole"], **results["trimap"][trimap]}
        for key in METRIC_KEYS:
            check_value(rows[name][key], expected[OFFICIAL_NAMES[key]], f"{name}/{key}")
    assert rows["edge_all_bg"]["mse_t"] == "nan" and rows["edge_no_transition"]["mse_t"] == "inf"
    summary = json.loads(json_path.read_text())
    assert summary["excluded_nonfinite"]["mse_t"] == ["edge_all_bg", "edge_no_transition"]
    assert summary["counts"]["mse_t"] == 1 and summary["counts"]["sad"] == 3
    expected_mse_t = EXPECTED["cases"]["real_resized_trimap"]["results"]["p3mnet_eval_py"][
        "trimap"
    ]["lin"]
    assert summary["means"]["mse_t"] == pytest.approx(expected_mse_t["MSE_TRIMAP"], rel=1e-6)
    assert "non-finite" in result.stderr


def test_bad_files_are_listed_skipped_and_exit_nonzero(tmp_path: Path) -> None:
    pred_dir, gt_dir, trimap_dir = write_case_folders(
        tmp_path, {"syn_ellipses": "k15", "real_identical": "k15"}
    )
    write_png(pred_dir / "no_gt.png", np.zeros((8, 8), np.uint8))
    write_png(gt_dir / "no_pred.png", np.zeros((8, 8), np.uint8))
    write_png(pred_dir / "small.png", np.zeros((8, 8), np.uint8))
    write_png(gt_dir / "small.png", np.zeros((8, 9), np.uint8))
    write_png(trimap_dir / "small.png", np.zeros((8, 9), np.uint8))
    (pred_dir / "broken.png").write_text("not a png")
    write_png(gt_dir / "broken.png", np.zeros((8, 8), np.uint8))
    write_png(trimap_dir / "broken.png", np.zeros((8, 8), np.uint8))
    write_png(pred_dir / "no_trimap.png", np.zeros((8, 8), np.uint8))
    write_png(gt_dir / "no_trimap.png", np.zeros((8, 8), np.uint8))
    (pred_dir / "notes.txt").write_text("ignored: not a PNG")
    csv_path, json_path = tmp_path / "metrics.csv", tmp_path / "summary.json"
    result = runner.invoke(
        app,
        [
            "eval",
            str(pred_dir),
            str(gt_dir),
            "--trimap-dir",
            str(trimap_dir),
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
        ],
    )
    assert result.exit_code == 1
    _, rows = read_csv(csv_path)
    assert sorted(rows) == ["real_identical", "syn_ellipses"]
    assert all(float(rows["real_identical"][key]) == 0.0 for key in METRIC_KEYS)
    skipped = {
        item["name"]: item["reason"] for item in json.loads(json_path.read_text())["skipped"]
    }
    assert set(skipped) == {"no_gt", "no_pred", "small", "broken", "no_trimap"}
    assert "no ground truth" in skipped["no_gt"]
    assert "no prediction" in skipped["no_pred"]
    assert "no trimap" in skipped["no_trimap"]
    assert "9x8" in skipped["small"] and "8x8" in skipped["small"]
    assert "not an image" in skipped["broken"] and "broken.png" in skipped["broken"]
    assert "skipped 5 file(s)" in result.stderr
    for name in skipped:
        assert name in result.stderr


def test_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(tmp_path / "nope"), str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DatasetError)
    assert "prediction folder not found" in str(result.exception)
    completed = subprocess.run(
        [sys.executable, "-m", "p3m.cli", "eval", str(tmp_path / "nope"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "prediction folder not found" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_csv_header_constant() -> None:
    assert ",".join(CSV_HEADER) == "name,sad,mse,mad,sad_t,mse_t,mad_t,sad_fg,sad_bg,grad,conn"


def test_nothing_evaluable_says_so_and_exits_nonzero(tmp_path: Path) -> None:
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    write_png(pred_dir / "a.png", np.zeros((8, 8), np.uint8))
    write_png(gt_dir / "b.png", np.zeros((8, 8), np.uint8))
    result = runner.invoke(app, ["eval", str(pred_dir), str(gt_dir)])
    assert result.exit_code == 1
    assert "no image could be evaluated" in result.stderr
    assert "skipped 2 file(s)" in result.stderr


def test_eval_reads_what_matte_writes(tmp_path: Path) -> None:
    """`p3m matte` writes <stem>_alpha.png (beside _rgba.png and its journal); `p3m eval` pairs
    them with <stem>.png ground truths, by detecting the suffix or with --pred-suffix."""
    pred_dir, gt_dir = tmp_path / "out", tmp_path / "gt"
    gt = {"a": np.tile(np.arange(16, dtype=np.uint8) * 16, (12, 1)), "b": np.full((12, 16), 255, np.uint8)}
    for stem, matte in gt.items():
        write_png(gt_dir / f"{stem}.png", matte)
        write_png(pred_dir / f"{stem}_alpha.png", matte if stem == "a" else np.zeros_like(matte))
        write_png(pred_dir / f"{stem}_rgba.png", np.zeros((12, 16, 4), np.uint8))
    (pred_dir / "manifest.jsonl").write_text("")
    json_path = tmp_path / "summary.json"
    result = runner.invoke(app, ["eval", str(pred_dir), str(gt_dir), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    assert "2 images evaluated, 0 skipped" in result.stdout
    assert "<stem>_alpha.png" in result.stderr  # says how it paired them
    summary = json.loads(json_path.read_text())
    assert summary["means"]["sad"] == pytest.approx((0 + 12 * 16 / 1000) / 2)

    evaluation = evaluate_folder(pred_dir, gt_dir, workers=1, pred_suffix="_alpha")
    assert [name for name, _ in evaluation.rows] == ["a", "b"] and evaluation.pred_suffix == "_alpha"
    assert evaluate_folder(pred_dir, gt_dir, workers=1).pred_suffix == "_alpha"  # detected
    # An explicit suffix is taken as given: none at all pairs nothing here.
    plain = runner.invoke(app, ["eval", str(pred_dir), str(gt_dir), "--pred-suffix", ""])
    assert plain.exit_code == 1 and "no image could be evaluated" in plain.stderr
    # Predictions named like the ground truths keep working, suffix or not in other files.
    write_png(pred_dir / "b.png", gt["b"])
    write_png(gt_dir / "c.png", gt["b"])
    direct = evaluate_folder(pred_dir, gt_dir, workers=1, pred_suffix="")
    assert [name for name, _ in direct.rows] == ["b"]
    assert "no prediction" in {item.name: item.reason for item in direct.skipped}["a"]
    missing = evaluate_folder(pred_dir, gt_dir, workers=1, pred_suffix="_alpha")
    assert f"no prediction {pred_dir / 'c_alpha.png'}" in {s.name: s.reason for s in missing.skipped}["c"]
