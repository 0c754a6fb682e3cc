"""The paper's result tables: numbers in the right columns, official scale, bold best, CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from p3m.cli import app
from p3m.errors import DatasetError
from p3m.evaluation.tables import (
    TABLE_METRICS,
    load_result,
    parse_result_spec,
    protocol_table,
    results_table,
)

runner = CliRunner()
KEYS = TABLE_METRICS  # sad, mse, mad, sad_t, mse_t, mad_t, grad, conn


def means(base: float) -> dict[str, float]:
    """Distinct values per metric: sad = base, mse = base / 1000, ..., conn = base + 0.7."""
    return {
        "sad": base, "mse": base / 1000, "mad": base / 500, "sad_t": base + 0.3,
        "mse_t": base / 100, "mad_t": base / 50, "grad": base + 0.6, "conn": base + 0.7,
        "sad_fg": 0.0, "sad_bg": 0.0,
    }  # fmt: skip


def write(path: Path, record: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


@pytest.fixture()
def result_files(tmp_path: Path) -> dict[str, Path]:
    return {
        # `p3m baseline` summary
        "cf_p": write(tmp_path / "cf_p.json", {
            "method": "cf", "method_label": "CF", "set": "P3M-500-P", "num_evaluated": 500,
            "means": means(10.0), "budget": {"max_pixels": 1_000_000, "num_resized": 7},
        }),
        "cf_rwp": write(tmp_path / "cf_rwp.json", {
            "method": "cf", "method_label": "CF", "set": "RWP", "num_evaluated": 636,
            "means": means(30.0),
            "trimaps": {"source": "generated", "kernel_size": 15},
        }),
        # `p3m evaluate-model` metrics.json (non-finite means as strings)
        "net_p": write(tmp_path / "net_p.json", {
            "checkpoint": "m.pth", "model": "p3mnet-r34", "set": "P3M-500-P", "num_images": 500,
            "means": {**means(8.73), "mse_t": "nan"},
        }),
        # `p3m eval --json`: no method, no set; the set shows in the folder names
        "eval_np": write(tmp_path / "eval_np.json", {
            "pred_dir": "/x/preds_np", "gt_dir": "/data/P3M-10k/validation/P3M-500-NP/mask",
            "num_evaluated": 500, "means": means(11.0),
        }),
    }


def parse_markdown(text: str) -> tuple[list[str], list[str], dict[str, list[str]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    groups, labels, body = cells[0], cells[2], cells[3:]
    return groups, labels, {row[0]: row for row in body}


def test_main_table_layout_values_and_bold(result_files) -> None:
    entries = [
        load_result(result_files["cf_p"]),
        load_result(result_files["net_p"], method="P3M-Net"),
        load_result(result_files["cf_rwp"]),
        parse_result_spec(f"CF={result_files['eval_np']}"),
    ]
    table = results_table(entries)
    groups, labels, rows = parse_markdown(table.to_markdown())
    # Column groups in the paper's order, whatever the argument order.
    assert [g for g in groups if g] == ["P3M-500-P", "P3M-500-NP", "RWP-636"]
    assert labels == ["Method"] + ["SAD", "MSE", "MAD", "SAD-T", "MSE-T", "MAD-T", "Grad", "Conn"] * 3
    assert list(rows) == ["CF", "P3M-Net"]
    cf, net = rows["CF"], rows["P3M-Net"]
    # P3M-500-P: columns 1..8; the official scale, nothing multiplied.
    assert net[1:9] == ["**8.73**", "**0.0087**", "**0.0175**", "**9.03**", "nan", "**0.1746**",
                        "**9.33**", "**9.43**"]
    assert cf[1:9] == ["10.00", "0.0100", "0.0200", "10.30", "0.1000", "0.2000", "10.60", "10.70"]
    # P3M-500-NP (9..16) only CF: a single value is not bold; P3M-Net has dashes.
    assert cf[9] == "11.00" and net[9:17] == ["–"] * 8
    assert cf[17] == "30.00" and cf[18] == "0.0300"
    notes = "\n".join(table.notes)
    assert "not x1000" in notes
    assert "CF on RWP-636: trimaps generated" in notes and "kernel 15" in notes
    assert "7 image(s) solved at <= 1,000,000 pixels" in notes


def test_bold_ties_at_displayed_precision(tmp_path) -> None:
    first = write(tmp_path / "a.json", {"set": "P3M-500-P", "means": {"sad": 8.731, "mse": 0.00261}})
    second = write(tmp_path / "b.json", {"set": "P3M-500-P", "means": {"sad": 8.734, "mse": 0.00269}})
    table = results_table([load_result(first, "A"), load_result(second, "B")], ["sad", "mse"])
    _, _, rows = parse_markdown(table.to_markdown())
    assert rows["A"][1:] == ["**8.73**", "**0.0026**"]
    assert rows["B"][1:] == ["**8.73**", "0.0027"]


def test_csv_full_precision_and_headers(result_files) -> None:
    entries = [load_result(result_files["cf_p"]), load_result(result_files["net_p"], "P3M-Net")]
    text = results_table(entries, ["sad", "mse"]).to_csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["Method", "P3M-500-P/SAD", "P3M-500-P/MSE"]
    assert rows[1] == ["CF", repr(10.0), repr(0.01)]
    assert rows[2] == ["P3M-Net", repr(8.73), repr(8.73 / 1000)]


def test_protocol_table(tmp_path) -> None:
    files = {
        protocol: write(tmp_path / f"{protocol.replace(':', '')}.json", {"model": "p3mnet-r34", "means": means(base)})
        for protocol, base in (("B:B", 8.7), ("B:N", 11.2), ("N:N", 7.9))
    }
    other = write(tmp_path / "other.json", {"means": means(9.0)})
    entries = [parse_result_spec(f"P3M-Net@{p}={f}") for p, f in files.items()]
    entries.append(parse_result_spec(f"Other@b:b={other}"))
    assert entries[1].set_name == "P3M-500-NP" and entries[0].set_name == "P3M-500-P"
    table = protocol_table(entries, ["sad", "mse"])
    text = table.to_markdown()
    body = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("|")][2:]
    rows = [[cell.strip() for cell in row] for row in body]
    assert [row[:4] for row in rows] == [
        ["P3M-Net", "B:B", "P3M-10k, faces blurred", "P3M-500-P"],
        ["P3M-Net", "B:N", "P3M-10k, faces blurred", "P3M-500-NP"],
        ["P3M-Net", "N:N", "P3M-10k, normal images", "P3M-500-NP"],
        ["Other", "B:B", "P3M-10k, faces blurred", "P3M-500-P"],
    ]
    # Best per protocol: under B:B, P3M-Net (8.70) beats Other (9.00); B:N and N:N have one row.
    assert rows[0][4] == "**8.70**" and rows[3][4] == "9.00"
    assert rows[1][4] == "11.20" and rows[2][4] == "7.90"
    assert not any("left out" in note for note in table.notes)
    # A record without a protocol (a `p3m baseline` one) is not dropped silently.
    baseline = write(tmp_path / "cf.json", {"method": "cf", "set": "P3M-500-P", "means": means(20.0)})
    with_baseline = protocol_table([*entries, parse_result_spec(str(baseline))], ["sad", "mse"])
    assert len(with_baseline.rows) == len(table.rows)
    left_out = [note for note in with_baseline.notes if "left out" in note]
    assert len(left_out) == 1 and "cf (P3M-500-P)" in left_out[0] and "no training protocol" in left_out[0]
    assert "left out, no training protocol: cf (P3M-500-P)" in with_baseline.to_markdown()


def test_errors_name_the_problem(result_files, tmp_path) -> None:
    with pytest.raises(DatasetError, match="two results for CF on P3M-500-P"):
        results_table([load_result(result_files["cf_p"]), load_result(result_files["cf_p"])])
    with pytest.raises(DatasetError, match="neither a test set"):
        parse_result_spec(f"X@P3M-600={result_files['cf_p']}")
    with pytest.raises(DatasetError, match="B:N tests on P3M-500-NP"):
        protocol_table([parse_result_spec(f"X@B:N={result_files['cf_p']}")])
    nowhere = write(tmp_path / "nowhere.json", {"means": {"sad": 1.0}})
    with pytest.raises(DatasetError, match="which test set"):
        results_table([load_result(nowhere)])
    with pytest.raises(DatasetError, match="no 'means'"):
        load_result(write(tmp_path / "bad.json", {"sad": 1}))


def test_cli_table_writes_markdown_and_csv(result_files, tmp_path) -> None:
    markdown, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    result = runner.invoke(
        app,
        ["table", str(result_files["cf_p"]), f"P3M-Net={result_files['net_p']}",
         "--markdown", str(markdown), "--csv", str(csv_path), "--metrics", "sad,conn"],
    )
    assert result.exit_code == 0, result.output
    assert "**8.73**" in markdown.read_text() and "| P3M-Net |" in result.output
    assert csv_path.read_text().splitlines()[0] == "Method,P3M-500-P/SAD,P3M-500-P/Conn"
    protocol = runner.invoke(app, ["table", f"P3M-Net@B:B={result_files['net_p']}"])
    assert protocol.exit_code == 0 and "| P3M-Net | B:B |" in protocol.output
    missing = runner.invoke(app, ["table", str(tmp_path / "missing.json")])
    assert missing.exit_code != 0
