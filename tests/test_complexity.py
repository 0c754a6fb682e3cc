"""Model complexity (Table 11): p3m.evaluation.complexity and `p3m experiment complexity`.

Runs use the two cheapest models at 32 x 64 with one timed pass: the numbers are not Table 11's,
the machinery is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from p3m.errors import ExperimentError, ModelNotFoundError
from p3m.evaluation.complexity import (
    COMPLEXITY_FILES,
    ComplexityProgress,
    ComplexityReport,
    ComplexitySettings,
    count_macs,
    default_model_order,
    run_complexity,
)
from p3m.models import get_spec, list_models

MODELS = ("basic-vitae-s", "basic-r34")
QUICK = {"size": (32, 64), "repeats": 1, "warmup": 0, "threads": 1, "devices": ("cpu",)}


def test_macs_are_half_of_torch_flops() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    # 3x3 conv: 3*4*9 MACs per output pixel; 1x1 conv: 4*2; the ReLU is not counted.
    assert count_macs(conv, (32, 48)) == (3 * 4 * 9 + 4 * 2) * 32 * 48


def test_default_settings_cover_every_registered_model_in_table_order() -> None:
    models = ComplexitySettings(devices=("cpu",)).resolved().models
    assert sorted(models) == list_models()
    assert models[:5] == ("p3mnet-r34", "basic-r34", "p3mnet-r34-tfi", "p3mnet-r34-tfi-sbfi", "p3mnet-r34-tfi-dbfi")
    assert default_model_order(["basic-swin-t", "p3mnet-swin-t"]) == ("p3mnet-swin-t", "basic-swin-t")


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        (ComplexitySettings(models=("basic-r34",), size=(50, 64)), ExperimentError, "multiples of 32"),
        (ComplexitySettings(models=("p3mnet-r50",)), ModelNotFoundError, "known models: basic-r34"),
        (ComplexitySettings(models=("basic-r34", "basic-r34")), ExperimentError, "listed twice"),
        (ComplexitySettings(repeats=0), ExperimentError, "repeats must be >= 1"),
        (ComplexitySettings(devices=("tpu",)), ExperimentError, "unknown device 'tpu'"),
    ],
)
def test_bad_settings_fail_before_measuring(settings: ComplexitySettings, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        settings.resolved()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_cuda_asked_for_without_cuda_is_one_clear_error() -> None:
    with pytest.raises(ExperimentError, match="CUDA is not available"):
        ComplexitySettings(devices=("cpu", "cuda")).resolved()


def test_run_writes_the_table_and_resumes_after_an_interruption(tmp_path: Path) -> None:
    settings = ComplexitySettings(models=MODELS, **QUICK)
    events: list[ComplexityProgress] = []

    def interrupt_at_second_model(event: ComplexityProgress) -> None:
        events.append(event)
        if event.model == MODELS[1]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_complexity(settings, tmp_path, on_progress=interrupt_at_second_model)
    saved = json.loads((tmp_path / COMPLEXITY_FILES["json"]).read_text())
    assert [row["model"] for row in saved["rows"]] == [MODELS[0]]  # the finished model was kept
    first_row = saved["rows"][0]

    events.clear()
    report = run_complexity(settings, tmp_path, on_progress=events.append)
    # Only the second model was measured; the first row is the saved one, times and all.
    assert {event.model for event in events if event.step != "done"} == {MODELS[1]}
    assert events[-1] == ComplexityProgress(4, 4, MODELS[1], "done")
    assert [event.done for event in events] == sorted(event.done for event in events)
    assert report.rows[0].to_dict() == first_row

    for row, name in zip(report.rows, MODELS, strict=True):
        assert row.model == name and row.parameters == get_spec(name).num_parameters
        assert row.macs > 0 and row.flops == 2 * row.macs
        (latency,) = row.latencies
        assert latency.device == "cpu" and len(latency.times_ms) == 1 and latency.median_ms > 0
    assert report.rows[1].label == "Basic (ResNet-34)"

    markdown = (tmp_path / COMPLEXITY_FILES["markdown"]).read_text()
    header = "| Method | Model | Params (M) | MACs (G) at 32x64 | Latency (ms), CPU, 1 thread ("
    assert header in markdown
    assert "| Basic (ResNet-34) | basic-r34 | 37.67 |" in markdown
    assert "2 FLOPs per multiply-accumulate" in markdown
    csv_lines = (tmp_path / COMPLEXITY_FILES["csv"]).read_text().splitlines()
    assert csv_lines[0].startswith("Method,Model,Params (M),MACs (G) at 32x64,") and len(csv_lines) == 3
    assert csv_lines[2].startswith("Basic (ResNet-34),basic-r34,37.66686,")
    again = ComplexityReport.from_dict(json.loads((tmp_path / COMPLEXITY_FILES["json"]).read_text()))
    assert again.rows == report.rows and again.settings == report.settings

    # Measuring a subset keeps the other models' saved rows (merged by model), nothing is
    # measured again, and the table says which rows come from an earlier run.
    events.clear()
    subset = run_complexity(ComplexitySettings(models=MODELS[1:], **QUICK), tmp_path, on_progress=events.append)
    assert {event.step for event in events} == {"done"}
    assert [row.model for row in subset.rows] == [MODELS[1], MODELS[0]] and subset.rows[1].to_dict() == first_row
    assert subset.earlier == (MODELS[1], MODELS[0])
    saved = json.loads((tmp_path / COMPLEXITY_FILES["json"]).read_text())
    assert [row["model"] for row in saved["rows"]] == [MODELS[1], MODELS[0]]
    assert f"From an earlier run with the same settings (not measured now): {MODELS[1]}, {MODELS[0]}." in (
        tmp_path / COMPLEXITY_FILES["markdown"]
    ).read_text()
    assert len((tmp_path / COMPLEXITY_FILES["csv"]).read_text().splitlines()) == 3

    # Other timing settings: nothing is reused. Parameters and MACs are reproducible.
    events.clear()
    rerun = run_complexity(
        ComplexitySettings(models=MODELS[:1], **{**QUICK, "repeats": 2}), tmp_path, on_progress=events.append
    )
    assert {event.model for event in events if event.step != "done"} == {MODELS[0]}
    assert len(rerun.rows[0].latencies[0].times_ms) == 2
    assert (rerun.rows[0].parameters, rerun.rows[0].macs) == (first_row["parameters"], first_row["macs"])


def test_cli_prints_and_writes_the_table(tmp_path: Path) -> None:
    from p3m.cli import app

    runner = CliRunner()
    command = ["experiment", "complexity", "-m", MODELS[0], "--size", "32x64", "--repeats", "1",
               "--warmup", "0", "--threads", "1", "--device", "cpu", "--out", str(tmp_path)]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "Table 11" in result.output and MODELS[0] in result.output
    assert "FLOPs / 2" in result.output
    for name in COMPLEXITY_FILES.values():
        assert (tmp_path / name).is_file()
    saved = (tmp_path / COMPLEXITY_FILES["json"]).read_text()
    assert "From an earlier run" not in result.output
    # Again: everything is resumed, nothing measured, the JSON is unchanged; the table says so.
    again = runner.invoke(app, command)
    assert again.exit_code == 0
    assert (tmp_path / COMPLEXITY_FILES["json"]).read_text() == saved
    assert f"From an earlier run with the same settings (not measured now): {MODELS[0]}." in again.output

    bad = runner.invoke(app, ["experiment", "complexity", "--size", "50", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and isinstance(bad.exception, ExperimentError)
    bad = runner.invoke(app, ["experiment", "complexity", "--size", "512x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "expected HxW" in bad.output
