"""p3m.experiments and `p3m experiment ...`: every study end to end on a tiny synthetic set.

Each study is interrupted part-way through the library (a KeyboardInterrupt from its progress
callback), then finished by the command, which must keep what was done (the predictions are not
rewritten) and print and write the complete table in the paper's layout. The checkpoints are
randomly initialised ResNet-34 models: the numbers mean nothing, but they are reproducible.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from p3m.data.synthetic import write_synthetic_dataset
from p3m.errors import CheckpointError, DatasetError, ExperimentError
from p3m.experiments.events import (
    CellProgress,
    CellReset,
    StudyFinished,
    StudyResumed,
    StudyStarted,
)
from p3m.runs import ItemFinished

P_SET = "validation/P3M-500-P"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # 64-pixel images gain nothing from threads, and on a shared machine they cost a lot.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiments") / "data"
    write_synthetic_dataset(root, n_train=1, n_val=2, seed=3, min_size=64, max_size=64)
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from p3m.models import create_model, save_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    made = {}
    for key, name, seed in (("a", "p3mnet-r34", 0), ("b", "p3mnet-r34", 1), ("basic", "basic-r34", 0)):
        torch.manual_seed(seed)
        made[key] = save_checkpoint(create_model(name, device="cpu"), folder / f"{key}.pth")
    return made


def interrupt_after(count: int, events: list) -> Callable[[object], None]:
    """A progress callback that records events and raises KeyboardInterrupt at the count-th image."""

    def on_event(event: object) -> None:
        events.append(event)
        finished = [e for e in events if isinstance(e, CellProgress) and isinstance(e.event, ItemFinished)]
        if isinstance(event, CellProgress) and isinstance(event.event, ItemFinished) and len(finished) == count:
            raise KeyboardInterrupt

    return on_event


def predictions(out: Path) -> dict[Path, int]:
    """Every prediction under a study's folder and its modification time."""
    return {path: path.stat().st_mtime_ns for path in out.glob("*/*/predictions/*.png")}


def invoke(args: list[str]) -> object:
    from p3m.cli import app

    return CliRunner().invoke(app, ["experiment", *args])


def processed(events: list) -> int:
    return sum(1 for e in events if isinstance(e, CellProgress) and isinstance(e.event, ItemFinished))


# --------------------------------------------------------------------------- Table 8


def test_obfuscation_resumes_after_an_interruption_and_reproduces(data, checkpoints, tmp_path):
    from p3m.experiments.obfuscation import ObfuscationSettings, run_obfuscation_study

    normal = data / P_SET / "original_image"
    settings = ObfuscationSettings(checkpoints["a"], data, normal_images=normal, strategy="resize")
    out = tmp_path / "interrupted"
    events: list = []
    with pytest.raises(KeyboardInterrupt):
        run_obfuscation_study(settings, out, on_event=interrupt_after(3, events))
    assert isinstance(events[0], StudyStarted) and events[0].items == 8  # 4 rows x 2 images
    done = predictions(out)
    assert 3 <= len(done) < 8

    events.clear()
    result = run_obfuscation_study(settings, out, on_event=events.append)
    assert processed(events) == 8 - len(done)  # only what was left
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in done.items())
    assert isinstance(events[-1], StudyFinished) and events[-1].failed == 0

    labels = [row[0].text for row in result.table.rows]
    assert labels == ["None (normal faces)", "Blurring", "Mosaicing", "Masking (zeros)"]
    assert [column.label for column in result.table.columns] == ["Obfuscation", "SAD", "MSE", "MAD"]
    assert all(cell.value is not None for row in result.table.rows for cell in row[1:])
    masked = next(r for r in result.cells if r.spec.row == "mask")
    assert masked.means["sad"] != next(r for r in result.cells if r.spec.row == "none").means["sad"]
    assert all(d["obfuscation"]["pixels"] > 0 for d in masked.details.values())
    assert (out / "mask" / "P3M-500-P" / "metrics.csv").read_text().count("\n") == 3  # header + 2 images
    markdown = (out / "obfuscation.md").read_text()
    assert markdown.startswith("**Table 8: P3M-Net (ResNet-34) on P3M-500-P") and "normal P3M-500-P images" in markdown

    # Interrupted and resumed = run in one go: tables and summary are equal, byte for byte.
    again = run_obfuscation_study(settings, tmp_path / "in-one-go")
    for kind in ("markdown", "csv", "json"):
        assert again.files[kind].read_text() == result.files[kind].read_text()

    # Another strength: the three obfuscated rows are computed again, the normal row is kept.
    events.clear()
    stronger = ObfuscationSettings(checkpoints["a"], data, normal_images=normal, strategy="resize", strength=2.0, limit=1)
    run_obfuscation_study(stronger, out, on_event=events.append)
    assert sorted(e.cell for e in events if isinstance(e, CellReset)) == ["Blurring", "Masking (zeros)", "Mosaicing"]
    assert processed(events) == 3


def test_obfuscation_command_on_the_released_images(data, checkpoints, tmp_path):
    out = tmp_path / "t8"
    args = ["obfuscation", "-w", str(checkpoints["a"]), "--data-root", str(data), "--strategy", "resize",
            "--limit", "1", "--metrics", "sad,mad,conn", "--out", str(out)]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "Table 8" in result.output and "Blurring (as released)" in result.output
    table = (out / "obfuscation.csv").read_text().splitlines()
    assert table[0] == "Obfuscation,P3M-500-P/SAD,P3M-500-P/MAD,P3M-500-P/Conn"
    assert [line.split(",")[0] for line in table[1:]] == ["Blurring (as released)", "Mosaicing", "Masking (zeros)"]
    summary = json.loads((out / "obfuscation.json").read_text())
    assert summary["settings"]["model"] == "p3mnet-r34" and [c["num_images"] for c in summary["cells"]] == [1, 1, 1]
    assert "already blurred" in (out / "obfuscation.md").read_text()
    # The released images' own blur: the blurring cell predicts the set's images unchanged.
    record = json.loads((out / "blur" / "P3M-500-P" / "metrics.json").read_text())
    assert record["set"] == "P3M-500-P" and record["obfuscation"]["faces"] == "released (blurred)"

    saved = (out / "obfuscation.json").read_text()
    assert invoke(args).exit_code == 0 and (out / "obfuscation.json").read_text() == saved

    bad = invoke(["obfuscation", "-w", str(checkpoints["a"]), "--data-root", str(data), "--methods", "pixelate", "--out", str(out)])
    assert bad.exit_code != 0 and "pixelate" in str(bad.exception)


def test_obfuscation_needs_face_masks_and_complete_normal_images(data, checkpoints, tmp_path):
    from p3m.experiments.obfuscation import ObfuscationSettings, run_obfuscation_study

    root = tmp_path / "data"
    shutil.copytree(data / P_SET, root / P_SET, ignore=shutil.ignore_patterns("facemask"))
    with pytest.raises(DatasetError, match="facemask"):
        run_obfuscation_study(ObfuscationSettings(checkpoints["a"], root), tmp_path / "out")
    (tmp_path / "few").mkdir()
    shutil.copy(next((data / P_SET / "original_image").iterdir()), tmp_path / "few")
    with pytest.raises(DatasetError, match="1 of the 2 P3M-500-P images have no normal version"):
        run_obfuscation_study(ObfuscationSettings(checkpoints["a"], data, normal_images=tmp_path / "few"), tmp_path / "out")


# --------------------------------------------------------------------------- Table 7


def test_ablation_resumes_and_lists_every_row_with_its_parameters(data, checkpoints, tmp_path):
    from p3m.experiments.ablation import AblationSettings, run_ablation_study

    out = tmp_path / "t7"
    rows = {"basic": checkpoints["basic"], "full": checkpoints["a"]}
    events: list = []
    with pytest.raises(KeyboardInterrupt):
        run_ablation_study(AblationSettings(rows, data, strategy="resize"), out, on_event=interrupt_after(3, events))
    done = predictions(out)
    assert 3 <= len(done) < 8

    spec = ",".join(f"{key}={path}" for key, path in rows.items())
    result = invoke(["ablation", "-c", spec, "--data-root", str(data), "--strategy", "resize", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Table 7" in result.output and "+TFI+sBFI+dBFI" in result.output
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in done.items())
    assert len(predictions(out)) == 8

    markdown = (out / "ablation.md").read_text().splitlines()
    assert markdown[2] == "|  |  |  |  |  | P3M-500-P |  |  | P3M-500-NP |  |  |"
    # Piped (not a terminal), the printed table keeps its natural width: no number is folded.
    import re

    numbers = re.findall(r"\d+\.\d+", "\n".join(markdown[4:]))
    assert numbers and all(number in result.output for number in numbers)
    assert markdown[4] == "| Method | TFI | sBFI | dBFI | Params (M) | SAD | MSE | MAD | SAD | MSE | MAD |"
    body = markdown[5:10]
    for line, start in zip(body, ["| Basic |  |  |  | 37.67 |", "| +TFI | ✓ |  |  | 38.93 | – |",
                                  "| +TFI+sBFI | ✓ | ✓ |  | 39.17 | – |", "| +TFI+dBFI | ✓ |  | ✓ | 39.24 | – |",
                                  "| +TFI+sBFI+dBFI (P3M-Net) | ✓ | ✓ | ✓ | 39.48 |"], strict=True):  # fmt: skip
        assert line.startswith(start), line
    assert "–" not in body[0] and "–" not in body[4]
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["parameters"]["basic"] == 37_666_860
    assert {(c["row"], c["set"], c["model"]) for c in summary["cells"]} == {
        ("basic", "P3M-500-P", "basic-r34"), ("basic", "P3M-500-NP", "basic-r34"),
        ("full", "P3M-500-P", "p3mnet-r34"), ("full", "P3M-500-NP", "p3mnet-r34"),
    }  # fmt: skip

    # A checkpoint of another variant than its row's is one clear error naming the file.
    with pytest.raises(CheckpointError, match=r"a\.pth"):
        run_ablation_study(AblationSettings({"tfi": checkpoints["a"]}, data, limit=1), tmp_path / "wrong")
    bad = invoke(["ablation", "-c", f"sbfi={checkpoints['a']}", "--data-root", str(data), "--out", str(out)])
    assert bad.exit_code != 0 and isinstance(bad.exception, ExperimentError) and "tfi-sbfi" in str(bad.exception)


# --------------------------------------------------------------------------- Tables 9/10


def test_copy_paste_resumes_and_tags_the_protocols(data, checkpoints, tmp_path):
    from p3m.evaluation.tables import load_result, protocol_table
    from p3m.experiments.copy_paste import CopyPasteSettings, run_copy_paste_study

    out = tmp_path / "t9"
    rows = {"none": checkpoints["a"], "icp": checkpoints["a"], "fcp": checkpoints["b"], "normal": checkpoints["b"]}
    events: list = []
    with pytest.raises(KeyboardInterrupt):
        run_copy_paste_study(CopyPasteSettings(rows, data, strategy="resize", limit=1), out, on_event=interrupt_after(3, events))
    done = predictions(out)

    args = ["copy-paste", "--data-root", str(data), "--strategy", "resize", "--limit", "1", "--out", str(out)]
    result = invoke([*args, "-c", f"none={rows['none']},icp={rows['icp']}", "-c", f"fcp={rows['fcp']},normal={rows['normal']}"])
    assert result.exit_code == 0, result.output
    assert "Tables 9/10" in result.output
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in done.items())

    lines = (out / "copy-paste.csv").read_text().splitlines()
    assert lines[0] == "Method,Training,P3M-CP,P3M-500-P/SAD,P3M-500-P/MSE,P3M-500-P/MAD,P3M-500-NP/SAD,P3M-500-NP/MSE,P3M-500-NP/MAD"
    cells = [line.split(",") for line in lines[1:]]
    # A missing cell is empty in every study's CSV (the table shows "–").
    assert [row[:3] for row in cells] == [["w/o P3M-CP", "B", ""], ["P3M-CP (ICP)", "B", "ICP"],
                                          ["P3M-CP (FCP)", "B", "FCP"], ["Normal training images", "N", ""]]  # fmt: skip
    assert "–" not in (out / "copy-paste.csv").read_text()
    assert cells[0][3:] == cells[1][3:] and cells[2][3:] == cells[3][3:] != cells[0][3:]  # same checkpoint, same numbers

    records = {(row, name): json.loads((out / row / name / "metrics.json").read_text()) for row in rows for name in ("P3M-500-P", "P3M-500-NP")}
    assert records["none", "P3M-500-P"]["protocol"] == "B:B" and records["fcp", "P3M-500-NP"]["protocol"] == "B:N"
    assert records["normal", "P3M-500-NP"]["protocol"] == "N:N" and "protocol" not in records["normal", "P3M-500-P"]
    # `p3m table --protocols` reads the cells as they are.
    entries = [load_result(out / row / name / "metrics.json") for row in ("none", "normal") for name in ("P3M-500-P", "P3M-500-NP")]
    assert [cell.text for cell in protocol_table(entries).rows[0][:2]] == ["w/o P3M-CP", "B:B"]

    bad = invoke([*args, "-c", f"cp={rows['none']}"])
    assert bad.exit_code != 0 and "unknown key 'cp'" in str(bad.exception)


# --------------------------------------------------------------------------- Table 2


def test_baselines_on_blurred_and_normal_images_resume(data, tmp_path):
    from p3m.experiments.baselines import BaselineStudySettings, run_baseline_study

    out = tmp_path / "t2"
    normal = data / P_SET / "original_image"
    events: list = []
    with pytest.raises(KeyboardInterrupt):
        run_baseline_study(BaselineStudySettings(data, normal, methods=("cf",)), out, on_event=interrupt_after(2, events))
    done = predictions(out)
    assert len(done) >= 2

    args = ["baselines", "--data-root", str(data), "--normal-images", str(normal), "--methods", "cf", "--out", str(out)]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "Table 2" in result.output
    kept = sum(1 for cell in ("blurred", "normal") if any(path.parts[-3] == cell for path in done))
    assert f"resumed: {kept} of 2 cells from an earlier run in {out} (--fresh recomputes)" in result.output
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in done.items())
    lines = (out / "baselines.csv").read_text().splitlines()
    assert lines[0] == (
        "Method,Blurred faces (B)/SAD,Blurred faces (B)/MSE,Blurred faces (B)/MAD,"
        "Normal faces (N)/SAD,Normal faces (N)/MSE,Normal faces (N)/MAD"
    )
    assert lines[1].startswith("CF,") and "–" not in lines[1]
    # The normal cell really solved the normal images.
    journal = (out / "cf" / "normal" / "manifest.jsonl").read_text()
    assert "original_image" in journal and "blurred_image" not in journal
    record = json.loads((out / "cf" / "blurred" / "metrics.json").read_text())
    assert record["method_label"] == "CF" and record["images"] == "blurred" and record["num_evaluated"] == 2

    empty = tmp_path / "none"
    empty.mkdir()
    missing = invoke(["baselines", "--data-root", str(data), "--normal-images", str(empty), "--methods", "cf", "--out", str(out)])
    assert missing.exit_code != 0 and isinstance(missing.exception, DatasetError)


class _TruthAsPrediction:
    """A cell's task that writes each image's ground truth as its prediction (reads the image
    first, so an image that is not there fails)."""

    def load(self, item):
        from p3m.io import read_alpha_u8, read_image

        read_image(item.source)
        return read_alpha_u8(item.payload.alpha)

    def compute(self, item, loaded):
        return loaded

    def write(self, item, result):
        from p3m.io import write_png
        from p3m.runs import Outcome

        write_png(item.outputs["alpha"], result)
        return Outcome(outputs=dict(item.outputs))


def test_a_study_run_that_evaluates_nothing_leaves_earlier_results_alone(data, tmp_path):
    """Every study writes its tables through `write_study`: a run in which every image failed
    (the tester's `/nonexist.png`) must not replace a finished run's tables with empty ones."""
    from p3m.evaluation.tables import Cell, Column
    from p3m.experiments.runner import (
        CellSpec,
        Group,
        find_test_samples,
        grouped_table,
        run_cells,
        write_study,
    )

    def study(samples):
        spec = CellSpec("truth", "P3M-500-P", tuple(samples), lambda _: _TruthAsPrediction(), {"method": "truth"})
        results = run_cells("demo", [spec], tmp_path)
        means = {"P3M-500-P": results[0].means}
        table = grouped_table("Demo", [Column("", "Method")], [([Cell("Truth")], means)], [Group("P3M-500-P", "P")], ("sad",))
        return write_study("demo", "Demo", table, results, tmp_path, {"method": "truth"})

    samples = find_test_samples(data, "P3M-500-P")
    done = study(samples)
    assert sorted(done.files) == ["csv", "json", "markdown"] and done.cells[0].means["sad"] == 0
    written = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and path.name != "manifest.jsonl"}

    ghost = dataclasses.replace(samples[0], name="ghost", image=tmp_path / "nonexist.png")
    failed = study([ghost])
    assert failed.files == {} and [name for name, _ in failed.failures] == ["truth/P3M-500-P: ghost"]
    assert "nothing was written" in failed.table.notes[-1]
    assert {path: path.read_bytes() for path in written} == written  # the study's and the cell's files


class _Interrupted(_TruthAsPrediction):
    """Computes the first image, then the user presses Ctrl-C."""

    def __init__(self) -> None:
        self.calls = 0

    def compute(self, item, loaded):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        return np.zeros_like(loaded)


def test_a_fresh_or_changed_cell_replaces_its_results_only_once_they_are_complete(data, tmp_path):
    """`--fresh` and other settings compute a cell into a hidden sibling folder: a computation
    that raises, is interrupted or evaluates nothing leaves the earlier files byte-identical."""
    from p3m.experiments.runner import CellSpec, find_test_samples, run_cells

    samples = tuple(find_test_samples(data, "P3M-500-P"))
    cell = tmp_path / "truth" / "P3M-500-P"

    def run(make_task, fresh=False, settings=None, chosen=samples):
        spec = CellSpec("truth", "P3M-500-P", chosen, make_task, settings or {"method": "truth"})
        return run_cells("demo", [spec], tmp_path, fresh=fresh)

    def files() -> dict[Path, bytes]:  # the cell's (an unfinished attempt's hidden sibling aside)
        return {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file() and ".p3m-new" not in str(path)}

    run(lambda _: _TruthAsPrediction())
    before = files()
    assert len(before) == 2 + 4  # two predictions, csv, record, journal, settings

    def broken(_):
        raise RuntimeError("the model could not be built")

    with pytest.raises(RuntimeError):
        run(broken, fresh=True)
    assert files() == before
    with pytest.raises(KeyboardInterrupt):
        run(lambda _: _Interrupted(), fresh=True)
    assert files() == before
    ghost = dataclasses.replace(samples[0], name="ghost", image=tmp_path / "nonexist.png")
    assert run(lambda _: _TruthAsPrediction(), fresh=True, chosen=(ghost,))[0].skipped
    assert files() == before  # nothing evaluated: the attempt is dropped, the results stay

    # Other settings, interrupted after one image: the next run continues the replacement
    # (one image left) and swaps it in; the journal names the cell's own folder.
    with pytest.raises(KeyboardInterrupt):
        run(lambda _: _Interrupted(), settings={"method": "zeros"})
    assert files() == before
    events: list = []
    spec = CellSpec("truth", "P3M-500-P", samples, lambda _: _Interrupted(), {"method": "zeros"})
    (result,) = run_cells("demo", [spec], tmp_path, on_event=events.append)
    assert processed(events) == 1 and result.folder == cell and result.means["sad"] > 0
    assert sorted(path.name for path in (tmp_path / "truth").iterdir()) == ["P3M-500-P"]
    assert json.loads((cell / "settings.json").read_text()) == {"method": "zeros"}
    assert ".p3m-new" not in (cell / "manifest.jsonl").read_text()
    assert str(cell / "predictions") in (cell / "manifest.jsonl").read_text()


def test_a_replacement_keeps_other_files_and_completes_after_a_stop(tmp_path):
    """`stage_run_dir` / `commit_run_dir`: a folder holding more than the results is swapped
    entry by entry (the other files stay); a stop between the renames of a swap is completed by
    the next run."""
    from p3m.experiments.runner import commit_run_dir, stage_run_dir

    folder = tmp_path / "cell"
    work, reason = stage_run_dir(folder, {"k": 1}, False, ["a.txt", "sub"])
    assert work == folder and reason is None
    (folder / "a.txt").write_text("old")
    (folder / "sub").mkdir()
    (folder / "sub" / "x").write_text("old")
    (folder / "notes.txt").write_text("mine")
    work, reason = stage_run_dir(folder, {"k": 2}, False, ["a.txt", "sub"])
    assert work == tmp_path / ".cell.p3m-new" and reason == "made with other settings (k)"
    assert (folder / "a.txt").read_text() == "old" and json.loads((folder / "settings.json").read_text()) == {"k": 1}
    (work / "a.txt").write_text("new")
    commit_run_dir(work, folder, ["a.txt", "sub"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cell"]
    assert sorted(path.name for path in folder.iterdir()) == ["a.txt", "notes.txt", "settings.json"]
    assert (folder / "a.txt").read_text() == "new" and (folder / "notes.txt").read_text() == "mine"

    # Stopped between the two renames of a whole-folder swap: the next run moves the new one in.
    (folder / "notes.txt").unlink()
    work, _ = stage_run_dir(folder, {"k": 3}, True, ["a.txt", "sub"])
    (work / "a.txt").write_text("newer")
    folder.rename(tmp_path / ".cell.p3m-old")
    work, reason = stage_run_dir(folder, {"k": 3}, False, ["a.txt", "sub"])
    assert work == folder and reason is None and (folder / "a.txt").read_text() == "newer"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cell"]

    # Stopped in an entry-by-entry swap, the earlier results set aside: the next run finishes it.
    (folder / "notes.txt").write_text("mine")
    work, _ = stage_run_dir(folder, {"k": 4}, False, ["a.txt", "sub"])
    (work / "a.txt").write_text("newest")
    (work / "sub").mkdir()
    retired = tmp_path / ".cell.p3m-old"
    retired.mkdir()
    for name in ("a.txt", "settings.json"):
        (folder / name).rename(retired / name)
    (retired / ".p3m-set-aside").touch()
    work, reason = stage_run_dir(folder, {"k": 4}, False, ["a.txt", "sub"])
    assert work == folder and reason is None and (folder / "a.txt").read_text() == "newest"
    assert sorted(path.name for path in folder.iterdir()) == ["a.txt", "notes.txt", "settings.json", "sub"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cell"]


# --------------------------------------------------------------------------- sensitivity


def test_sensitivity_with_the_offline_default_resumes(data, tmp_path, monkeypatch):
    from p3m.experiments.sensitivity import (
        SENSITIVITY_FILES,
        SensitivitySettings,
        SensitivityTask,
        run_sensitivity,
    )

    # Three images (the two of the set and a copy); the run is interrupted while matting the
    # second (each image is matted 6 times: as it is and with 5 obfuscations).
    folders = {kind: tmp_path / kind for kind in ("images", "alphas", "facemasks")}
    for kind, source in (("images", "original_image"), ("alphas", "mask"), ("facemasks", "facemask")):
        shutil.copytree(data / P_SET / source, folders[kind])
        shutil.copy(sorted(folders[kind].iterdir())[0], folders[kind] / "copy.png")
    settings = SensitivitySettings(
        images=(folders["images"],), model="selfie-cf", alphas=folders["alphas"], facemasks=folders["facemasks"]
    )
    out = tmp_path / "sensitivity"
    calls = []
    matte = SensitivityTask._matte

    def interrupted(self, image):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt
        return matte(self, image)

    with monkeypatch.context() as patch:
        patch.setattr(SensitivityTask, "_matte", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_sensitivity(settings, out)
    first = {path: path.stat().st_mtime_ns for path in (out / "heatmaps").iterdir()}
    assert len(first) == 1
    events: list = []
    events.clear()
    result = run_sensitivity(settings, out, on_event=events.append)
    assert processed(events) == 2
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in first.items())
    assert result.model == "selfie-cf" and not result.failures
    assert [row[0].text for row in result.table.rows] == ["Blur x0.5", "Blur x1", "Blur x2", "Mosaic", "Mask (zeros)"]
    labels = [column.label for column in result.table.columns]
    assert labels[2:6] == ["Overall", "Face mask", "Hair/transition band", "Rest"] and labels[-1] == "ΔSAD"
    per_image = (out / SENSITIVITY_FILES["per_image"]).read_text().splitlines()
    assert len(per_image) == 1 + 3 * 5 and per_image[0].startswith("image,obfuscation,method,strength")
    for details in result.images.values():
        assert details["facemask"] == "given" and details["face_pixels"] > 0 and details["band_pixels"] > 0
        for row in details["rows"]:
            assert 0 <= row["mean_abs_face"] <= 1 and row["max_abs"] <= 1
            assert row["delta_sad"] == pytest.approx(row["sad_obfuscated"] - row["sad_clean"])
    from p3m.io import read_image

    sheet = read_image(out / "heatmaps" / "copy.png")
    assert sheet.shape[1] > 6 * 256 and sheet.shape[0] > 2 * 256  # 6 tiles wide, 2 high, labels, colour bar

    # Zeros have no parameter: "–" in the table, an empty cell in the CSV (not 0.0).
    mask_row = (out / SENSITIVITY_FILES["csv"]).read_text().splitlines()[-1].split(",")
    assert result.table.rows[-1][1].text == "–" and mask_row[:2] == ["Mask (zeros)", ""]
    # Resuming says so, through the study's events.
    assert [(e.kept, e.total, e.unit) for e in events if isinstance(e, StudyResumed)] == [(1, 3, "images")]

    # A run where every image fails (here: a file that does not exist) writes nothing: the
    # finished run's tables are left as they were, and the command says nothing was written.
    written = {path: path.read_bytes() for path in out.iterdir() if path.is_file() and path.name != "manifest.jsonl"}
    failed = run_sensitivity(dataclasses.replace(settings, images=(tmp_path / "nonexist.png",)), out)
    assert failed.files == {} and [name for name, _ in failed.failures] == ["nonexist"]
    assert "nothing was written" in failed.table.notes[-1]
    command = invoke(["sensitivity", str(tmp_path / "nonexist.png"), "-m", "selfie-cf", "--alphas", str(folders["alphas"]),
                      "--facemasks", str(folders["facemasks"]), "--out", str(out)])  # fmt: skip
    assert command.exit_code == 1 and "written: nothing" in command.output, command.output
    assert {path: path.read_bytes() for path in written} == written

    # Other settings: computed again beside the earlier results, which an interrupted run
    # leaves as they were and a finished one replaces (no hidden folder left).
    changed = dataclasses.replace(settings, changed_threshold=0.2)
    with pytest.raises(KeyboardInterrupt):
        run_sensitivity(changed, out, on_event=interrupt_after(1, []))
    assert {path: path.read_bytes() for path in written} == written
    events.clear()
    run_sensitivity(changed, out, on_event=events.append)
    resumed = [e.kept for e in events if isinstance(e, StudyResumed)]  # what the stopped run did
    assert any(isinstance(e, CellReset) for e in events) and resumed and processed(events) == 3 - resumed[0]
    assert [e.settings for e in events if isinstance(e, CellReset)] == [("changed_threshold",)]
    assert json.loads((out / "settings.json").read_text())["changed_threshold"] == 0.2
    assert sorted(path.name for path in out.parent.iterdir() if path.name.startswith(".")) == []
    assert ".p3m-new" not in (out / "manifest.jsonl").read_text()


def test_earlier_results_replaced_are_said_in_the_surfaces_terms():
    """`p3m experiment sensitivity --threshold 0.3` said "made with other settings
    (changed_threshold, obfuscations)", the settings' Python names; and Python read `--fresh`."""
    from p3m.cli.experiment_cmd import _reset_reason
    from p3m.experiments.events import CellReset, StudyResumed

    event = CellReset("sensitivity", "made with other settings (changed_threshold, obfuscations)",
                      ("changed_threshold", "obfuscations"))  # fmt: skip
    assert _reset_reason(event) == "made with other settings (--threshold, --obfuscations)"
    assert _reset_reason(CellReset("a", "computed afresh (fresh=True)", fresh=True)) == "computed afresh (--fresh)"
    resumed = StudyResumed("sensitivity", 2, 3, "images", "out")
    assert resumed.message.endswith("(fresh=True recomputes)") and resumed.worded("--fresh").endswith("(--fresh recomputes)")


def test_sensitivity_command_detects_faces_and_reports_images_without_one(data, checkpoints, tmp_path):
    import cv2
    from skimage import data as skdata

    from p3m.io import write_png

    face = tmp_path / "astronaut.png"
    write_png(face, cv2.resize(skdata.astronaut(), (160, 160), interpolation=cv2.INTER_AREA))
    no_face = tmp_path / "wall.png"
    write_png(no_face, np.full((64, 64, 3), 120, np.uint8))
    out = tmp_path / "out"
    result = invoke(["sensitivity", str(face), str(no_face), "--model", "p3mnet-r34", "--weights", str(checkpoints["a"]),
                     "--obfuscations", "blur:1,mask", "--strategy", "resize", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "no face found" in result.output and "1 image(s) failed" in result.output
    summary = json.loads((out / "sensitivity.json").read_text())
    details = summary["images"]["astronaut"]
    assert details["facemask"] == "detected" and details["face_pixels"] > 100
    assert [row["obfuscation"] for row in details["rows"]] == ["blur", "mask"]
    assert summary["failed"][0]["name"] == no_face.stem
    header = (out / "sensitivity.csv").read_text().splitlines()[0]
    assert "ΔSAD" not in header and "Mean |Δα|/Face mask" in header  # no ground truth: no SAD columns
    assert np.isfinite(details["rows"][1]["mean_abs_face"])

    bad = invoke(["sensitivity", str(face), "--obfuscations", "pixelate", "--out", str(out)])
    assert bad.exit_code != 0 and "pixelate" in str(bad.exception)


def test_table_footers_tell_checkpoints_with_the_same_file_name_apart() -> None:
    """Two runs' `best.pth` were both footed as `best.pth`: the footer names the shortest tail of
    each path that no other checkpoint shares."""
    from p3m.experiments.runner import checkpoint_note, distinct_path_labels

    assert distinct_path_labels(["runs/bb/best.pth", "runs/nn/best.pth", "other/cp.pth"]) == [
        "bb/best.pth",
        "nn/best.pth",
        "cp.pth",
    ]
    assert distinct_path_labels(["a/x/best.pth", "b/x/best.pth"]) == ["a/x/best.pth", "b/x/best.pth"]
    assert distinct_path_labels(["same.pth", "same.pth"]) == ["same.pth", "same.pth"]
    note = checkpoint_note("hybrid", {"bb": Path("/r/bb/best.pth"), "bn": Path("/r/bn/best.pth")})
    assert note == "hybrid test strategy; checkpoints: bb=bb/best.pth, bn=bn/best.pth."


def test_an_interrupted_study_says_how_far_it_got(capsys) -> None:
    """`p3m experiment sensitivity/baselines ... --fresh` stopped by Ctrl-C printed nothing (Typer
    makes a KeyboardInterrupt exit code 130 silently): one line, as folder runs end with."""
    from rich.console import Console

    from p3m.cli.experiment_cmd import _study_progress
    from p3m.runs import ItemRecord, RunStarted

    console = Console(file=None, stderr=True, width=100)
    with pytest.raises(KeyboardInterrupt), _study_progress("study", console) as on_event:
        on_event(StudyStarted("sensitivity", ("a", "b"), items=6))
        on_event(CellProgress("a", 0, 2, RunStarted(total=3, pending=1, kept=2)))
        on_event(CellProgress("a", 0, 2, ItemFinished(ItemRecord("x.png", "done"), 1, 1)))
        on_event(CellProgress("b", 1, 2, RunStarted(total=3, pending=3, kept=0)))
        on_event(CellProgress("b", 1, 2, ItemFinished(ItemRecord("x.png", "failed", error="x.png: bad"), 1, 3)))
        raise KeyboardInterrupt
    assert capsys.readouterr().err.splitlines()[-1] == "interrupted: 3/6 done; run again to resume"


def test_a_heatmap_sheet_of_an_image_of_tile_size_leaves_the_image_alone() -> None:
    """An image as large as a tile (256 px) was drawn on in place: cv2 failed on a read-only
    one, so `p3m experiment sensitivity` failed on every 256 x 256 image."""
    from p3m.experiments.heatmap import heatmap_sheet

    image = np.full((256, 200, 3), 90, np.uint8)
    image.flags.writeable = False
    mask = np.zeros((256, 200), bool)
    mask[60:120, 50:150] = True
    change = np.zeros((256, 200), np.float32)
    sheet = heatmap_sheet(image, change, [image], [change], ["blur"], mask, mask)
    assert sheet.dtype == np.uint8 and (image == 90).all()
