"""metrics.json as one typed record: round trip, strict JSON, files of earlier versions."""

from __future__ import annotations

import json
import math

import pytest

from p3m.errors import DatasetError
from p3m.evaluation.record import MetricsRecord, SkippedFile


def test_round_trip_is_strict_json_and_keeps_every_field(tmp_path):
    record = MetricsRecord(
        means={"sad": 1.5, "mse_t": math.nan}, counts={"sad": 2, "mse_t": 1},
        excluded_nonfinite={"mse_t": ["b"]}, num_images=2, skipped=[SkippedFile("c", "c.png: truncated")],
        method="p3mnet-r34", model="p3mnet-r34", set_name="P3M-500-NP", protocol="B:N", training_protocol="B",
        strategy="hybrid", checkpoint="m.pth", gt_dir="/d/P3M-500-NP/mask", metric_keys=["sad", "mse_t"],
        per_image={"a": {"sad": 1.0}, "b": {"sad": 2.0, "mse_t": math.inf}}, extra={"budget": {"num_resized": 0}},
    )
    record.write(tmp_path / "metrics.json")
    text = (tmp_path / "metrics.json").read_text()
    data = json.loads(text)  # strict: non-finite values are strings
    assert data["means"]["mse_t"] == "nan" and data["per_image"]["b"]["mse_t"] == "inf"
    assert data["format"] == "p3m-metrics" and data["set"] == "P3M-500-NP" and "trimap_dir" not in data
    back = MetricsRecord.read(tmp_path / "metrics.json")
    assert math.isnan(back.means.pop("mse_t")) and back.means == {"sad": 1.5}
    assert back.skipped == record.skipped and back.extra == record.extra
    assert (back.label, back.set_name, back.protocol, back.num_images) == ("p3mnet-r34", "P3M-500-NP", "B:N", 2)
    assert back.per_image["b"]["mse_t"] == math.inf
    with pytest.raises(ValueError, match="own keys"):
        MetricsRecord(means={}, extra={"means": 1})


def test_files_of_earlier_versions_are_read(tmp_path):
    old = {"checkpoint": "m.pth", "model": "p3mnet-r34", "set": "P3M-500-P", "num_images": 3,
           "failed": ["x"], "means": {"SAD": 8.7, "mse": "inf"}}
    record = MetricsRecord.from_json(old)
    assert record.label == "p3mnet-r34" and record.num_images == 3 and record.means["sad"] == 8.7
    assert record.skipped == [SkippedFile("x", "could not be evaluated")] and record.notes() == ("1 image(s) skipped",)
    with pytest.raises(DatasetError, match="no 'means'"):
        MetricsRecord.from_json({"sad": 1})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="bad.json: not a readable JSON summary"):
        MetricsRecord.read(tmp_path / "bad.json")
