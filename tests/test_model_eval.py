"""p3m.evaluation.model: a model on a test set through the run engine (events, failures, record)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from p3m.data.layout import find_samples
from p3m.data.synthetic import write_synthetic_dataset
from p3m.evaluation.model import FAST_METRICS, evaluate_on_set
from p3m.runs import ItemFinished, RunFinished, RunStarted


@pytest.fixture(scope="module")
def model():
    from p3m.models import create_model

    torch.manual_seed(0)
    return create_model("p3mnet-r34", device="cpu")


def test_scores_writes_predictions_and_records_a_bad_image(model, tmp_path):
    write_synthetic_dataset(tmp_path / "data", n_train=1, n_val=2, seed=0, min_size=64, max_size=64)
    samples = find_samples(tmp_path / "data", "P3M-500-P")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    samples = [samples[0], dataclasses.replace(samples[1], name="broken", image=broken), samples[1]]
    events = []
    model.train()
    result = evaluate_on_set(
        model, samples, "resize", FAST_METRICS, tmp_path / "preds", accumulate="eval_py", on_event=events.append
    )
    assert model.training  # its mode is given back
    assert result.names == [samples[0].name, samples[2].name] and result.failed == ["broken"]
    assert "broken.png" in result.skipped[0].reason
    assert sorted(p.stem for p in (tmp_path / "preds").glob("*.png")) == sorted(result.names)
    assert set(result.rows[0]) == set(FAST_METRICS) and np.isfinite(result.means()["sad"])
    assert isinstance(events[0], RunStarted) and events[0].total == 3 and isinstance(events[-1], RunFinished)
    assert [e.finished for e in events if isinstance(e, ItemFinished)] == [1, 2, 3]
    record = result.record(model="p3mnet-r34", set_name="P3M-500-P").to_json()
    assert record["num_evaluated"] == 2 and record["skipped"][0]["name"] == "broken"
    assert set(record["per_image"]) == set(result.names) and record["gt_dir"] == str(samples[0].alpha.parent)
    # The same images again give the same numbers (every image is predicted again).
    again = evaluate_on_set(model, samples, "resize", FAST_METRICS, tmp_path / "preds", accumulate="eval_py")
    assert again.rows == result.rows


def test_old_path_warns():
    with pytest.warns(DeprecationWarning, match="p3m.evaluation.model"):
        from p3m.training.validation import evaluate_on_set as old
    assert old is evaluate_on_set
