"""Device choice (`p3m.models.device.resolve_device`) everywhere a device can be named: a device
that is not there or does not exist is one clear P3MError line, before any weights are read."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from p3m.cli import app
from p3m.errors import ConfigError, DeviceError
from p3m.models.device import parse_device, resolve_device

runner = CliRunner()


@pytest.fixture()
def no_cuda(monkeypatch):
    """This machine as a CPU-only one, whatever it really is."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_resolve_device_names_and_defaults(no_cuda, monkeypatch):
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError) as missing:
        resolve_device("cuda")
    assert "CUDA is not available" in _one_line(missing.value)
    # Raised from Python, it speaks Python; the command line words it as a flag.
    from p3m.cli import command_line_option

    assert str(missing.value).endswith("use device='cpu'") and "--" not in str(missing.value)
    assert missing.value.worded(command_line_option).endswith("use --device cpu")
    for unknown in ("gpu", "banana", "cuda:x", "cpu:0:1", ""):
        with pytest.raises(DeviceError, match="unknown device"):
            resolve_device(unknown)
    # A CUDA machine with one GPU: "cuda" is it, a second one does not exist, ranks get theirs.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(DeviceError, match="cuda:1 .*1 CUDA device"):
        resolve_device("cuda:1")
    assert parse_device("cuda:3") == torch.device("cuda:3")  # syntax only
    assert issubclass(DeviceError, ConfigError)


def test_matte_with_a_missing_or_unknown_device_is_one_line(no_cuda, tmp_path):
    from PIL import Image

    source = tmp_path / "a.png"
    Image.fromarray(np.full((40, 30, 3), 120, np.uint8)).save(source)
    checkpoint = tmp_path / "never-read.pth"  # the device is checked before any weights are read
    result = runner.invoke(
        app, ["matte", str(source), "-o", str(tmp_path / "o"), "-m", "p3mnet-r34", "-w", str(checkpoint),
              "--device", "cuda"],
    )
    assert isinstance(result.exception, DeviceError), result.output
    assert "CUDA is not available" in _one_line(result.exception)
    for model in ("selfie-cf", "auto"):  # selfie-cf runs on the CPU but takes no nonsense either
        result = runner.invoke(app, ["matte", str(source), "-o", str(tmp_path / "o"), "-m", model, "--device", "gpu"])
        assert isinstance(result.exception, DeviceError), (model, result.output)
        assert "unknown device 'gpu'" in _one_line(result.exception)
        result = runner.invoke(app, ["matte", str(source), "-o", str(tmp_path / "o"), "-m", model, "--device", "cuda"])
        assert isinstance(result.exception, DeviceError), (model, result.output)
    assert not (tmp_path / "o").exists()


def test_evaluate_model_and_serve_check_the_device_first(no_cuda, tmp_path):
    result = runner.invoke(
        app, ["evaluate-model", str(tmp_path / "never-read.pth"), "--model", "p3mnet-r34", "--set", "P3M-500-P",
              "--data-root", str(tmp_path), "--device", "cuda"],
    )
    assert isinstance(result.exception, DeviceError), result.output
    pytest.importorskip("uvicorn")
    result = runner.invoke(app, ["serve", "--model", "selfie-cf", "--device", "cuda:0"])
    assert isinstance(result.exception, DeviceError), result.output
    from p3m.models import create_model

    with pytest.raises(DeviceError):
        create_model("p3mnet-r34", weights=tmp_path / "never-read.pth", device="cuda")


def test_onnx_with_cuda_is_p3ms_own_line(tmp_path, monkeypatch):
    onnxruntime = pytest.importorskip("onnxruntime")
    from p3m.inference.onnx_runtime import providers_for_device

    assert providers_for_device(None) is None and providers_for_device("cpu") is None
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(DeviceError) as error:
        providers_for_device("cuda")
    assert "onnxruntime" in _one_line(error.value) and "CUDAExecutionProvider" in str(error.value)
    with pytest.raises(DeviceError, match="unknown device"):
        providers_for_device("tpu")
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert providers_for_device("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    # Through Matter: the error comes before onnxruntime is asked (no raw warning on stderr).
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    from p3m.inference.api import Matter

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DeviceError):
            Matter(tmp_path / "model.onnx", device="cuda")


@pytest.mark.slow
def test_device_error_through_the_real_entry_point(tmp_path):
    """The whole process: exit code 2 and one red line on stderr, no traceback."""
    code = (
        "import torch, sys\n"
        "torch.cuda.is_available = lambda: False\n"
        "from p3m.cli import main\n"
        f"main(['evaluate-model', {str(tmp_path / 'x.pth')!r}, '--model', 'p3mnet-r34', '--set', 'RWP',"
        f" '--data-root', {str(tmp_path)!r}, '--device', 'cuda'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "CUDA is not available" in lines[0]
    assert Path(tmp_path / "x.pth").exists() is False
