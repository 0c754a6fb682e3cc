"""Which torch device to run on: the one check every command, the API and the service share.

`resolve_device` turns what a user typed (`--device`, `device=`, `run.device`) into a
`torch.device` that exists on this machine, or raises one `DeviceError` line saying what is
wrong and what to type instead. It is called before any weights are read, so a wrong device
fails at once rather than after loading a checkpoint (or deep inside torch with a traceback).

    >>> resolve_device(None)           # cuda if this machine has it, else cpu
    >>> resolve_device("cuda")         # DeviceError on a machine without CUDA
    >>> resolve_device("gpu")          # DeviceError: unknown device 'gpu' (use cpu, cuda, ...)
"""

from __future__ import annotations

import torch

from p3m.errors import DeviceError
from p3m.vocabulary import DEVICE_HELP

__all__ = ["DEVICE_HELP", "parse_device", "resolve_device"]  # DEVICE_HELP: from p3m.vocabulary

_TYPES = ("cpu", "cuda", "mps")


def parse_device(device: str | torch.device) -> torch.device:
    """The `torch.device` a name stands for, by syntax alone (not whether it is present).

    Raises `DeviceError` for anything but cpu, cuda, cuda:N and mps.
    """
    if isinstance(device, torch.device):
        parsed = device
    else:
        text = str(device).strip().lower()
        try:
            parsed = torch.device(text)
        except (RuntimeError, ValueError):
            raise DeviceError(f"unknown device {str(device)!r} (use {DEVICE_HELP})") from None
    if parsed.type not in _TYPES or (parsed.type != "cuda" and parsed.index not in (None, 0)):
        raise DeviceError(f"unknown device {str(device)!r} (use {DEVICE_HELP})")
    return parsed


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: `device` checked against this machine, or the best one present.

    None and "auto" mean CUDA when available, else CPU. "cuda" / "cuda:N" need CUDA (and N below
    the device count), "mps" Apple's Metal backend. Anything else, or a device this machine
    lacks, raises `DeviceError` (a `ConfigError`) in one line, e.g. "cuda requested but CUDA is
    not available on this machine (...); use device='cpu'" (the command line: `--device cpu`).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parsed = parse_device(device)
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{parsed} requested but CUDA is not available on this machine "
                "(no NVIDIA GPU or a CPU-only PyTorch build); use {device}",
                options={"device": "cpu"},
            )
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(
                f"{parsed} requested but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
            )
    elif parsed.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(
                "mps requested but Apple's Metal backend is not available here; use {device}", options={"device": "cpu"}
            )
    return parsed
