"""Training: config loading, backbone init, a CPU smoke run, exact resume, 2-process DDP, evaluate-model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from p3m.data.synthetic import write_synthetic_dataset
from p3m.errors import CheckpointError, ConfigError
from p3m.training.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """8 training samples and 2 per test set, 112-144 px: fast enough for CPU training tests."""
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root, n_train=8, n_val=2, seed=0, min_size=112, max_size=144, trimap_kernel=5)
    return root


def _smoke_overrides(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.root={data_root}",
        f"run.out_dir={out}",
        "run.progress=false",
        "run.threads=1",
        "data.crop_sizes=[96,112]",
        "data.output_size=64",
        "validation.at_start=false",
        *extra,
    ]


def _log(out: Path, event: str) -> list[dict]:
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == event]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["p3mnet_r34", "p3mnet_swin_t", "p3mnet_vitae_s", "smoke"])
def test_shipped_configs_load(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.model.startswith("p3mnet-")
    if name != "smoke":  # the paper's recipe
        assert (config.optim.lr, config.optim.batch_size, config.optim.epochs) == (1e-5, 8, 150)
        assert config.data.crop_sizes == [512, 768, 1024] and config.data.output_size == 512
        assert config.data.trimap_kernel_range == [15, 30]


def test_defaults_are_the_paper_recipe():
    config = TrainConfig().validate()
    assert (config.optim.lr, config.optim.batch_size, config.optim.epochs) == (1e-5, 8, 150)
    assert config.validation.sets == ["P3M-500-P", "P3M-500-NP"]


def test_overrides_and_validation(tmp_path):
    config = load_config(
        CONFIGS / "smoke.yaml",
        ["optim.lr=1e-4", "data.crop_sizes=[64, 96]", "run.amp=false", "validation.limit=null"],
        values={"data.root": "/data/p3m: odd name", "optim.batch_size": 2},
    )
    assert config.optim.lr == 1e-4 and config.data.crop_sizes == [64, 96]
    assert config.data.root == "/data/p3m: odd name" and config.optim.batch_size == 2
    assert config.validation.limit is None and config.run.amp is False
    with pytest.raises(ConfigError, match="unknown config key optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="optim.batch_size"):
        load_config(None, ["optim.batch_size=two"])
    with pytest.raises(ConfigError, match="data.output_size must be a multiple of 32"):
        load_config(None, ["data.output_size=100"])
    with pytest.raises(ConfigError, match="cp.mode=icp needs cp.sources"):
        load_config(None, ["cp.mode=icp"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: p3mnet-r50\n")
    with pytest.raises(ConfigError, match="model must be one of"):
        load_config(bad)
    bad.write_text("optim: [1, 2]\n")
    with pytest.raises(ConfigError, match="bad.yaml: config key optim must be a mapping"):
        load_config(bad)


def test_a_registered_model_can_be_trained(monkeypatch):
    """Model names come from the registry: a model added with register_model validates."""
    from p3m.models import get_spec, register_model, registry

    with pytest.raises(ConfigError, match="model must be one of .*p3mnet-r34"):
        load_config(None, ["model=my-r34"])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    spec = get_spec("p3mnet-r34")
    register_model(type(spec)(name="my-r34", constructor=spec.constructor, description="a copy"))
    assert load_config(None, ["model=my-r34"]).model == "my-r34"


def test_backbone_weights_from_imagenet_checkpoint(tmp_path):
    from p3m.models import create_model
    from p3m.training.trainer import load_backbone_weights

    torch.manual_seed(1)
    source = create_model("p3mnet-r34", device="cpu")
    backbone_state = {f"module.{k}": v for k, v in source.backbone().state_dict().items()}
    path = tmp_path / "r34mp_imagenet.pth"
    torch.save({"state_dict": backbone_state}, path)
    torch.manual_seed(2)
    model = create_model("p3mnet-r34", device="cpu")
    loaded = load_backbone_weights(model, path)
    assert loaded == len(source.backbone().state_dict())
    for key, value in source.backbone().state_dict().items():
        assert torch.equal(model.backbone().state_dict()[key], value), key
    decoder_key = next(k for k in model.state_dict() if "decoder" in k and k.endswith("weight"))
    assert not torch.equal(model.state_dict()[decoder_key], source.state_dict()[decoder_key])
    torch.save({"state_dict": {"unrelated.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="does not look like a backbone"):
        load_backbone_weights(model, path)


# --------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def smoke_run(small_data, tmp_path_factory):
    """24 steps of r34 at 64 px (batch 4, lr 3e-4), validated before and after on both test sets.

    (Fewer steps leave the BatchNorm running statistics, used in eval mode, too close to their
    initial values for the validation to show the progress the training loss shows.)
    """
    from p3m.training.trainer import train

    out = tmp_path_factory.mktemp("smoke_run")
    config = load_config(
        CONFIGS / "smoke.yaml",
        _smoke_overrides(small_data, out, "optim.epochs=12", "optim.batch_size=4", "validation.at_start=true"),
    )
    events: list = []
    result = train(config, on_event=events.append)
    return out, result, events


@pytest.mark.slow
def test_smoke_run_learns(smoke_run):
    out, result, _ = smoke_run
    assert result.step == 24 and result.epoch == 12
    losses = [r["loss"] for r in _log(out, "train")]
    assert len(losses) == 24 and all(np.isfinite(losses))
    assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4]), losses
    validation = _log(out, "validation")
    for name in ("P3M-500-P", "P3M-500-NP"):
        before = next(r for r in validation if r["set"] == name and r["step"] == 0)
        after = next(r for r in validation if r["set"] == name and r["step"] == 24)
        assert after["sad"] < before["sad"], (name, before["sad"], after["sad"])
        assert before["strategy"] == "hybrid" and after["num_images"] == 2
    start = _log(out, "start")[0]
    assert start["composition_loss"] is True and start["world_size"] == 1
    # The final model is an official-format checkpoint that loads strictly into a fresh model.
    from p3m.models import create_model

    payload = torch.load(out / "model.pth", map_location="cpu", weights_only=True)
    assert set(payload) == {"state_dict"}
    create_model("p3mnet-r34", weights=out / "model.pth", device="cpu")
    resumable = torch.load(out / "checkpoints" / "final.pth", map_location="cpu", weights_only=True)
    assert {"state_dict", "optimizer", "scheduler", "rng", "step", "config"} <= set(resumable)
    assert resumable["step"] == 24


@pytest.mark.slow
def test_progress_events_and_their_rendering(smoke_run):
    """The trainer reports typed events (rendered by the CLI only): steps, validation, the end."""
    import io

    from rich.console import Console

    from p3m.cli._ui import training_progress
    from p3m.runs import ItemFinished
    from p3m.training.events import (
        StepFinished,
        TrainingFinished,
        TrainingStarted,
        ValidationFinished,
        ValidationProgress,
    )

    _, result, events = smoke_run
    assert events[-1] == TrainingFinished(24, stopped=False)
    started = next(e for e in events if isinstance(e, TrainingStarted))
    assert (started.step, started.total_steps, started.steps_per_epoch) == (0, 24, 2)
    steps = [e for e in events if isinstance(e, StepFinished)]
    assert [e.step for e in steps] == list(range(1, 25)) and steps[-1].epoch == 12
    assert [e.loss for e in steps] == result.losses
    finished = [(e.set_name, e.step) for e in events if isinstance(e, ValidationFinished)]
    assert finished == [("P3M-500-P", 0), ("P3M-500-NP", 0), ("P3M-500-P", 24), ("P3M-500-NP", 24)]
    images = [e for e in events if isinstance(e, ValidationProgress) and isinstance(e.event, ItemFinished)]
    assert len(images) == 8 and {e.set_name for e in images} == {"P3M-500-P", "P3M-500-NP"}
    screen = io.StringIO()
    with training_progress(Console(file=screen, force_terminal=True, width=100)) as render:
        for event in events:
            render(event)
    assert "train epoch" in screen.getvalue() and "validating on P3M-500-NP" in screen.getvalue()


def test_module_entry_point_is_the_train_command(capsys):
    """`python -m p3m.training` (what torchrun starts) takes exactly the options of `p3m train`."""
    from typer.main import get_command

    from p3m.cli import app
    from p3m.training.__main__ import main

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    # Its usage line names no `train` sub-command (there is none under `python -m p3m.training`).
    assert "python -m p3m.training [OPTIONS]" in text and "p3m.training train" not in text
    train = get_command(app).commands["train"]
    for parameter in train.params:
        assert all(option in text for option in parameter.opts if option.startswith("--")), parameter.name
    assert main(["--set", "optim.lr=-1"]) == 2
    assert "optim.lr must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_model_command(smoke_run, small_data, tmp_path):
    from p3m.cli import app

    out, _, _ = smoke_run
    predictions = tmp_path / "predictions"
    result = CliRunner().invoke(
        app,
        ["evaluate-model", str(out / "model.pth"), "--set", "RWP", "--data-root", str(small_data),
         "--strategy", "resize", "--out", str(predictions), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "SAD" in result.output
    written = sorted(p.name for p in predictions.glob("*.png"))
    assert written == ["synth_rwp_0000.png", "synth_rwp_0001.png"]
    from p3m.io import read_alpha_u8

    assert read_alpha_u8(predictions / written[0]).dtype == np.uint8
    report = json.loads((predictions / "metrics.json").read_text())
    assert report["model"] == "p3mnet-r34" and report["num_images"] == 2
    assert report["means"]["sad"] >= 0 and "sad_t" not in report["means"]  # RWP has no trimaps
    # The run trained on blurred images (its config.yaml says so); RWP is in no protocol table.
    assert report["training_protocol"] == "B" and "protocol" not in report

    # On P3M-500-NP that is B:N, which `p3m table` reads without a manual tag.
    from p3m.evaluation.tables import load_result

    on_np = tmp_path / "on_np"
    result = CliRunner().invoke(
        app,
        ["evaluate-model", str(out / "checkpoints" / "final.pth"), "--set", "P3M-500-NP",
         "--data-root", str(small_data), "--strategy", "resize", "--out", str(on_np), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    # The metric names of `p3m eval`, `table` and `baseline` (DISPLAY_NAMES), and their per-image CSV.
    assert all(name in result.output for name in ("SAD-T", "Grad", "Conn")), result.output
    assert not any(name in result.output for name in ("SAD_T", "GRAD", "CONN")), result.output
    import csv

    from p3m.evaluation.folder import CSV_HEADER

    with (on_np / "metrics.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    per_image = json.loads((on_np / "metrics.json").read_text())["per_image"]
    assert rows[0] == list(CSV_HEADER) and sorted(row[0] for row in rows[1:]) == sorted(per_image)
    first = rows[1]
    assert float(first[CSV_HEADER.index("sad")]) == pytest.approx(per_image[first[0]]["sad"])
    entry = load_result(on_np / "metrics.json")
    assert entry.protocol == "B:N" and entry.set_name == "P3M-500-NP"
    assert entry.method == "p3mnet-r34"

    # Two runs of one model on one set: --label names them apart in `p3m table`.
    labelled = tmp_path / "labelled"
    result = CliRunner().invoke(
        app,
        ["evaluate-model", str(out / "model.pth"), "--set", "P3M-500-NP", "--data-root", str(small_data),
         "--strategy", "resize", "--out", str(labelled), "--device", "cpu", "--limit", "1", "--label", "ICP"],
    )
    assert result.exit_code == 0, result.output
    assert load_result(labelled / "metrics.json").method == "ICP"


def test_training_protocol_comes_from_the_checkpoint_or_its_run_folder(tmp_path):
    from p3m.models import save_checkpoint
    from p3m.training.config import training_protocol
    from p3m.vocabulary import Protocol

    table_protocol = Protocol.of

    model = torch.nn.Linear(2, 2)
    resumable = save_checkpoint(model, tmp_path / "ckpt" / "final.pth", extra={"config": {"data": {"protocol": "N"}}})
    assert training_protocol(resumable) == "N"
    run = tmp_path / "run"
    bare = save_checkpoint(model, run / "model.pth")
    assert training_protocol(bare) is None  # neither the file nor its folder knows
    (run / "config.yaml").write_text("model: p3mnet-r34\ndata:\n  protocol: B\n")
    assert training_protocol(bare) == "B"
    (run / "config.yaml").write_text("data: [not, a, mapping\n")
    assert training_protocol(bare) is None
    assert [table_protocol(t, s) for t, s in (("B", "P3M-500-P"), ("B", "P3M-500-NP"), ("N", "P3M-500-NP"))] == [
        "B:B", "B:N", "N:N"]
    assert table_protocol("N", "P3M-500-P") is None and table_protocol("B", "RWP") is None
    assert table_protocol(None, "P3M-500-P") is None


@pytest.mark.slow
def test_exact_resume_gives_identical_weights(small_data, tmp_path):
    """6 steps in one go == 3 steps, stop, resume (with 2 loader workers) for 3 more: same bits."""
    from p3m.training.trainer import train

    common = ("optim.batch_size=2", "optim.epochs=2", "validation.every_epochs=0",
              "validation.at_end=false", "optim.schedule=cosine")
    whole = tmp_path / "whole"
    train(load_config(CONFIGS / "smoke.yaml", _smoke_overrides(
        small_data, whole, *common, "optim.max_steps=6", "run.checkpoint_every=3")))
    assert sorted(p.name for p in (whole / "checkpoints").iterdir()) == ["final.pth", "step_00000003.pth"]
    part = tmp_path / "part"
    train(load_config(CONFIGS / "smoke.yaml", _smoke_overrides(small_data, part, *common, "optim.max_steps=3")))
    periodic = torch.load(whole / "checkpoints" / "step_00000003.pth", map_location="cpu", weights_only=True)
    stopped = torch.load(part / "checkpoints" / "final.pth", map_location="cpu", weights_only=True)
    assert all(torch.equal(stopped["state_dict"][k], v) for k, v in periodic["state_dict"].items())
    # Stopped mid-epoch (4 steps per epoch); resumed with worker processes this time.
    train(
        load_config(CONFIGS / "smoke.yaml",
                    _smoke_overrides(small_data, part, *common, "optim.max_steps=6", "data.workers=2")),
        resume=part / "checkpoints" / "final.pth",
    )
    expected = torch.load(whole / "checkpoints" / "final.pth", map_location="cpu", weights_only=True)
    resumed = torch.load(part / "checkpoints" / "final.pth", map_location="cpu", weights_only=True)
    assert resumed["step"] == expected["step"] == 6
    for key, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    losses_whole = [r["loss"] for r in _log(whole, "train")]
    losses_part = [r["loss"] for r in _log(part, "train")]
    assert losses_part == losses_whole
    # The optimiser moments continue exactly too.
    first = next(iter(expected["optimizer"]["state"].values()))
    again = resumed["optimizer"]["state"][next(iter(expected["optimizer"]["state"]))]
    assert torch.equal(first["exp_avg_sq"], again["exp_avg_sq"])


def test_train_command_trains_a_table7_ablation(small_data, tmp_path):
    """`p3m train --model basic-r34`: one step of the bare framework (no TFI/sBFI/dBFI, so no
    side outputs and no deep-supervision loss terms); its model.pth is a basic-r34 checkpoint."""
    from p3m.cli import app
    from p3m.models import create_model, identify_variant, read_state_dict

    out = tmp_path / "basic"
    overrides = _smoke_overrides(
        small_data, out, "optim.batch_size=2", "validation.at_end=false", "run.checkpoint_every=0"
    )
    result = CliRunner().invoke(
        app,
        ["train", str(CONFIGS / "smoke.yaml"), "--model", "basic-r34", "--max-steps", "1",
         *[arg for override in overrides for arg in ("--set", override)]],
    )
    assert result.exit_code == 0, result.output
    assert "trained basic-r34 for 1 step;" in result.output
    (record,) = _log(out, "train")
    assert np.isfinite(record["loss"]) and np.isfinite(record["global"])
    state = read_state_dict(out / "model.pth")
    assert identify_variant(state) == "basic-r34"
    assert not any(key.split("_")[0] in ("tfi", "sbfi", "dbfi") for key in state)
    create_model("basic-r34", weights=out / "model.pth", device="cpu")  # strict load


def test_resume_rejects_weights_only_checkpoint(small_data, tmp_path):
    from p3m.models import create_model, save_checkpoint
    from p3m.training.trainer import Trainer

    path = tmp_path / "weights.pth"
    save_checkpoint(create_model("p3mnet-r34", device="cpu"), path)
    config = load_config(CONFIGS / "smoke.yaml", _smoke_overrides(small_data, tmp_path / "run", "optim.max_steps=1"))
    with pytest.raises(CheckpointError, match="not a resumable one"):
        Trainer(config, resume=path).run()


def test_train_command_reports_bad_data_root_in_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "p3m.cli", "train", str(CONFIGS / "smoke.yaml"), "--data-root", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data root does not exist" in lines[0], completed.stderr


def test_training_refuses_bad_layout_before_starting(tmp_path):
    from p3m.errors import DatasetError
    from p3m.training.trainer import train

    (tmp_path / "train" / "blurred_image").mkdir(parents=True)
    config = load_config(CONFIGS / "smoke.yaml", _smoke_overrides(tmp_path, tmp_path / "run"))
    with pytest.raises(DatasetError, match="missing folder"):
        train(config)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(small_data, tmp_path):
    """`p3m train --nproc 2`: two gloo ranks, batch 4 split 2 + 2, only rank 0 writes."""
    out = tmp_path / "ddp"
    # Without OMP_NUM_THREADS: `p3m train` sets a fair share itself, so torchrun prints no note.
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    command = [
        sys.executable, "-m", "p3m.cli", "train", str(CONFIGS / "smoke.yaml"), "--nproc", "2",
        "--data-root", str(small_data), "--out", str(out), "--max-steps", "3", "--batch-size", "4",
        *[arg for override in ("run.progress=false", "run.threads=1", "data.crop_sizes=[96]",
                               "data.output_size=64", "validation.at_start=false", "validation.at_end=true", "validation.limit=1",
                               "validation.sets=[P3M-500-P]")
          for arg in ("--set", override)],
    ]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "OMP_NUM_THREADS" not in completed.stderr, completed.stderr[-3000:]
    start = _log(out, "start")
    assert len(start) == 1 and start[0]["world_size"] == 2  # one writer
    assert start[0]["steps_per_epoch"] == 2  # 8 samples / 2 ranks / 2 per rank
    assert len(_log(out, "train")) == 3
    assert len(_log(out, "validation")) == 1
    checkpoint = torch.load(out / "checkpoints" / "final.pth", map_location="cpu", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2 and checkpoint["step"] == 3
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])


def test_protocol_selects_training_images(small_data, tmp_path):
    from p3m.training.trainer import Trainer

    def train_images(*overrides: str) -> set[str]:
        config = load_config(CONFIGS / "smoke.yaml", _smoke_overrides(small_data, tmp_path / "run", *overrides))
        train_samples, validation = Trainer(config)._samples()
        assert set(validation) == {"P3M-500-P", "P3M-500-NP"} and len(validation["P3M-500-P"]) == 2
        return {sample.image.parent.name for sample in train_samples}

    assert train_images("data.protocol=B") == {"blurred_image"}  # B:B and B:N
    assert train_images("data.protocol=N") == {"original_image"}  # N:N, default normal folder
    normal = tmp_path / "my_normal_images"
    normal.mkdir()
    for path in (small_data / "train" / "original_image").iterdir():
        (normal / path.name).write_bytes(path.read_bytes())
    assert train_images("data.protocol=N", f"data.normal_images={normal}") == {"my_normal_images"}


def test_stop_request_writes_resumable_checkpoint(small_data, tmp_path):
    """What Ctrl-C does: finish the step, save a resumable step checkpoint, return (here without fg/bg)."""
    from p3m.training.trainer import Trainer

    config = load_config(CONFIGS / "smoke.yaml", _smoke_overrides(
        small_data, tmp_path / "run", "optim.batch_size=2", "validation.at_end=false", "run.checkpoint_every=0",
        "data.use_composition=false"))

    class StopAfterTwoSteps:
        steps = 0

        def setup(self, model, config):
            pass

        def before_forward(self, batch, rng):
            return batch

        def after_step(self):
            self.steps += 1
            if self.steps == 2:
                trainer.request_stop()

        def close(self):
            pass

    trainer = Trainer(config, hooks=[StopAfterTwoSteps()])
    result = trainer.run()
    assert result.step == 2
    checkpoint = tmp_path / "run" / "checkpoints" / "step_00000002.pth"
    assert result.final_checkpoint == checkpoint and checkpoint.is_file()
    assert not (tmp_path / "run" / "model.pth").exists()
    assert _log(tmp_path / "run", "stopped")[0]["step"] == 2
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["step"] == 2
    # Without fg/bg the composition term is left out, and the log says so.
    assert _log(tmp_path / "run", "start")[0]["composition_loss"] is False
    assert "composition loss left out" in _log(tmp_path / "run", "note")[0]["message"]
    assert all(r["fusion_comp"] is None for r in _log(tmp_path / "run", "train"))


def test_progress_without_a_terminal_is_plain_lines():
    """Piped to a file (nohup, CI), training progress is a few plain lines: no bar redraws, no
    blank lines. Folder runs print nothing but their results there either."""
    import io

    from rich.console import Console

    from p3m.cli._ui import run_progress, training_progress
    from p3m.runs import ItemFinished, ItemRecord, RunFinished, RunReport, RunStarted
    from p3m.training.events import (
        StepFinished,
        TrainingFinished,
        TrainingStarted,
        ValidationFinished,
        ValidationProgress,
    )

    log = io.StringIO()
    with training_progress(Console(file=log, width=100)) as render:
        render(TrainingStarted(step=0, total_steps=6, steps_per_epoch=2))
        for step in range(1, 7):
            render(StepFinished(step=step, total_steps=6, epoch=(step + 1) // 2, loss=1.0 / step, values={}))
            if step == 4:
                render(ValidationProgress("P3M-500-P", step, RunStarted(2, 2, 0)))
                render(ValidationProgress("P3M-500-P", step, ItemFinished(ItemRecord("a", "done"), 1, 2)))
                render(ValidationProgress("P3M-500-P", step, RunFinished(RunReport([]))))
                render(ValidationFinished("P3M-500-P", step, 2, {"sad": 12.5, "mse": 0.01}, 2))
        render(TrainingFinished(6, stopped=False))
    lines = log.getvalue().splitlines()
    assert lines and all(line.strip() for line in lines), lines
    assert len(lines) <= 6, lines  # one per epoch and per validation, not one per redraw
    assert any("epoch 3" in line and "step 6/6" in line and "loss 0.1667" in line for line in lines)
    assert any("P3M-500-P" in line and "SAD 12.5" in line for line in lines)
    piped = io.StringIO()
    with run_progress("matting", Console(file=piped, width=100), describe=lambda record: None) as on_event:
        on_event(RunStarted(1, 1, 0))
        on_event(ItemFinished(ItemRecord("a", "done"), 1, 1))
    assert piped.getvalue() == ""


def test_training_into_an_earlier_run_says_so(small_data, tmp_path, caplog):
    """`p3m train` into an existing --out replaced model.pth and the checkpoints without a word."""
    from p3m.training.trainer import train

    out = tmp_path / "run"
    overrides = _smoke_overrides(small_data, out, "optim.max_steps=1", "optim.batch_size=2", "validation.every_epochs=0", "validation.at_end=false")
    train(load_config(CONFIGS / "smoke.yaml", overrides))
    assert (out / "model.pth").exists() and "earlier run" not in caplog.text
    with caplog.at_level("WARNING", logger="p3m.training.trainer"):
        train(load_config(CONFIGS / "smoke.yaml", overrides))
    assert "holds an earlier run" in caplog.text and "--resume" in caplog.text


def test_workers_capped_to_the_machine_and_random_backbone_warned(small_data, tmp_path, caplog, monkeypatch):
    """The README's config asks for 8 data-loading workers: on a 2-CPU machine torch warned twice
    (its own words, not p3m's) and `backbone_weights: null` trained from random weights silently."""
    import warnings

    from p3m.training import trainer

    monkeypatch.setattr(trainer.os, "sched_getaffinity", lambda pid: {0, 1})
    assert (trainer.cap_workers(8), trainer.cap_workers(2), trainer.cap_workers(0)) == (2, 2, 0)
    assert trainer.cap_workers(8, processes_here=2) == 1 and trainer.cap_workers(8, processes_here=4) == 1
    monkeypatch.setattr(trainer.os, "sched_getaffinity", lambda pid: {0})
    caplog.clear()
    overrides = _smoke_overrides(small_data, tmp_path / "run", "optim.max_steps=1", "optim.batch_size=2",
                                 "data.workers=8", "validation.every_epochs=0", "validation.at_end=false")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING", logger="p3m.training.trainer"):
        warnings.simplefilter("always")
        trainer.train(load_config(CONFIGS / "smoke.yaml", overrides))
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("data.workers=8 capped to 1" in m for m in messages) == 1, messages
    random_init = [m for m in messages if "run.backbone_weights is not set" in m]
    assert len(random_init) == 1, messages
    assert "r34mp_pretrained_imagenet.pth.tar" in random_init[0] and "--backbone-weights" in random_init[0]


def test_plain_progress_every_log_every_steps_with_pace():
    """Piped (nohup, a CI log), an 85 s/step run printed nothing between its start and end:
    now a start line (steps, images, device) and one line every `run.log_every` steps."""
    import io

    from rich.console import Console

    from p3m.cli._ui import training_progress
    from p3m.training.events import StepFinished, TrainingStarted

    log = io.StringIO()
    with training_progress(Console(file=log, width=100)) as render:
        render(TrainingStarted(0, 100, 1000, num_images=9421, device="cpu", log_every=20))
        for step in range(1, 41):
            render(StepFinished(step, 100, 1, 0.5, {}, seconds=85.0 * step))
    lines = log.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "100 steps" in lines[0] and "9421 training images" in lines[0] and "cpu" in lines[0]
    assert lines[1] == "epoch 1 step 20/100 loss 0.5000 (85 s/step)" and "step 40/100" in lines[2]
