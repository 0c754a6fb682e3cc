"""Reading and writing P3M-Net checkpoints in the official format.

Official checkpoints are `torch.save({'state_dict': model.state_dict()})`. We also accept a bare
state_dict and a `module.` prefix (DataParallel/DDP), always load with `weights_only=True`, and
turn every failure (missing, truncated or foreign file, another variant, missing keys) into a
one-line `CheckpointError` that names the file, the variant the file looks like and the first
mismatched keys.

Example::

    model = P3MNetR34()
    load_checkpoint(model, "p3mnet_pretrained_on_p3m10k.pth")
    save_checkpoint(model, "copy.pth")
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from p3m.errors import CheckpointError
from p3m.io.atomic import atomic_open
from p3m.models.p3mnet import Integration

logger = logging.getLogger(__name__)

RESNET_BACKBONE = "resnet-imagenet-backbone"

# Keys that only one variant has: (variant, key prefix). The first match names the variant.
_VARIANT_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("p3mnet-r34", "resnet.conv1.weight"),
    ("p3mnet-vitae-s", "encoder.layers.0.RC."),
    ("p3mnet-swin-t", "encoder.patch_embed.proj1."),
    ("p3mnet-swin-t", "encoder.layers.0.blocks.0.attn_mask"),
    (RESNET_BACKBONE, "layer1.0.conv1.weight"),
)
_STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model")
_SHOW_KEYS = 3


@dataclass(frozen=True)
class LoadReport:
    """What a non-strict load left out (all empty after a strict load)."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()


def identify_variant(state_dict: Mapping[str, Any]) -> str | None:
    """The model variant a state_dict belongs to, from its characteristic keys; None if unknown.

    A whole-model state_dict without some integration modules is named as the Table 7
    ablation it is (e.g. `basic-r34`, `p3mnet-swin-t-tfi-sbfi`).
    """
    for variant, prefix in _VARIANT_SIGNATURES:
        if any(key.startswith(prefix) for key in state_dict):
            if variant == RESNET_BACKBONE:
                return variant
            return _ablation_of(variant, state_dict)
    return None


def _ablation_of(variant: str, state_dict: Mapping[str, Any]) -> str:
    """`variant`, or its ablation when the decoder is there but integration modules are not."""
    prefix = "" if variant == "p3mnet-r34" else "decoder."
    if not any(key.startswith(f"{prefix}decoder4_g.") for key in state_dict):
        return variant  # no decoder at all (e.g. a backbone-only file): say the family
    present = {
        module: any(key.startswith(f"{prefix}{module}_") for key in state_dict)
        for module in ("tfi", "sbfi", "dbfi")
    }
    return Integration(**present).variant_name(variant.removeprefix("p3mnet-"))


def _first_line(error: BaseException) -> str:
    """The first sentence of an exception message, for one-line error reports."""
    text = str(error).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.split(". ")[0].rstrip(".")
    if len(line) < 8:  # e.g. a bare KeyError code: name the exception type too
        line = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def extract_state_dict(payload: object, path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state_dict inside a loaded checkpoint object (official wrapper or bare), `module.` stripped."""
    if isinstance(payload, Mapping):
        for wrapper in _STATE_DICT_WRAPPERS:
            inner = payload.get(wrapper)
            if isinstance(inner, Mapping):
                payload = inner
                break
    if not isinstance(payload, Mapping) or not payload:
        raise CheckpointError(f"holds no state_dict (found {type(payload).__name__})", path)
    non_tensors = [key for key, value in payload.items() if not isinstance(value, Tensor)]
    if non_tensors:
        shown = ", ".join(map(str, list(payload)[:_SHOW_KEYS]))
        raise CheckpointError(
            f"holds no state_dict of tensors (top-level keys: {shown}, ...)", path
        )
    state_dict = {str(key): value for key, value in payload.items()}
    if all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def _why_unreadable(file: Path, error: BaseException) -> str:
    """One line saying why torch.load failed, judged from the file's first bytes."""
    with file.open("rb") as stream:
        head = stream.read(8)
    detail = _first_line(error)
    if not head:
        return "is empty, not a checkpoint"
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # neither a zip nor a pickle
        if file.suffix.lower() == ".onnx":
            return "is an ONNX file, not a PyTorch checkpoint (`p3m matte` and `p3m serve` take it as --model)"
        return f"is not a PyTorch checkpoint (it starts with {head!r})"
    if "Weights only load failed" in str(error):
        return f"holds Python objects that a weights-only load refuses ({detail})"
    if head.startswith(b"PK\x03\x04"):
        return f"is a truncated or corrupt PyTorch checkpoint ({detail})"
    if head.startswith(b"\x80"):
        return f"is a truncated or corrupt legacy PyTorch checkpoint ({detail})"
    return f"is not a PyTorch checkpoint (it starts with {head!r})"


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load the state_dict of the checkpoint file at `path` onto the CPU (weights only, no code)."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            "no such checkpoint file" if not file.exists() else "is a folder, not a checkpoint file"
            if file.is_dir() else "is not a regular file", path
        )
    try:
        with warnings.catch_warnings():
            # A plain (non-zip) pickle: torch notes its protocol on the terminal; the load
            # works or fails on its own, and a failure is explained below.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... here
        raise CheckpointError(_why_unreadable(file, error) + _cache_hint(file), path) from error
    return extract_state_dict(payload, path)


def _cache_hint(file: Path) -> str:
    """For a damaged file in p3m's weights cache: how to replace it ("" for any other file)."""
    from p3m.models.hub import weights_dir

    try:
        relative = file.resolve().relative_to(weights_dir().resolve())
    except (OSError, ValueError):
        return ""
    if len(relative.parts) < 2:
        return ""
    name = relative.parts[0]
    return f"; it is in the weights cache: run `p3m weights download {name} --force` or `p3m weights import FILE --as {name}`"


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW_KEYS])
    more = len(keys) - _SHOW_KEYS
    return f"{shown} (+{more} more)" if more > 0 else shown


def _compare(model_state: Mapping[str, Tensor], state_dict: Mapping[str, Tensor]) -> LoadReport:
    missing = tuple(key for key in model_state if key not in state_dict)
    unexpected = tuple(key for key in state_dict if key not in model_state)
    mismatched = tuple(
        key
        for key, value in state_dict.items()
        if key in model_state and value.shape != model_state[key].shape
    )
    return LoadReport(missing, unexpected, mismatched)


def _describe_mismatch(
    report: LoadReport,
    model_state: Mapping[str, Tensor],
    state_dict: Mapping[str, Tensor],
    variant: str,
) -> str:
    looks_like = identify_variant(state_dict)
    parts = [f"does not fit {variant}"]
    if looks_like == RESNET_BACKBONE:
        parts.append("it looks like an ImageNet ResNet backbone, not a whole P3M-Net checkpoint")
    elif looks_like and looks_like != variant:
        parts.append(f"it looks like a {looks_like} checkpoint")
    elif looks_like is None:
        parts.append("it looks like no known P3M-Net variant")
    if report.missing:
        parts.append(f"{len(report.missing)} keys missing: {_list_keys(list(report.missing))}")
    if report.unexpected:
        parts.append(
            f"{len(report.unexpected)} unexpected keys: {_list_keys(list(report.unexpected))}"
        )
    if report.mismatched:
        shapes = [
            f"{key} {tuple(state_dict[key].shape)} vs {tuple(model_state[key].shape)}"
            for key in report.mismatched
        ]
        parts.append(f"{len(shapes)} shapes differ (file vs model): {_list_keys(shapes)}")
    return "; ".join(parts)


def load_state_dict_into(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    strict: bool = True,
    source: str | os.PathLike[str] | None = None,
) -> LoadReport:
    """Copy `state_dict` into `model`; strict: all keys and shapes must agree (CheckpointError otherwise).

    Non-strict loads copy every key present in both with equal shape and report the rest.
    """
    bare = _unwrap_model(model)
    variant = getattr(bare, "variant", type(bare).__name__)
    model_state = bare.state_dict()
    report = _compare(model_state, state_dict)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise CheckpointError(_describe_mismatch(report, model_state, state_dict, variant), source)
    if not strict:
        skip = set(report.mismatched)
        state_dict = {k: v for k, v in state_dict.items() if k in model_state and k not in skip}
        if report.missing or report.unexpected or report.mismatched:
            logger.warning(
                "%s: partial load: %s",
                source or "state_dict",
                _describe_mismatch(report, model_state, state_dict, variant),
            )
    bare.load_state_dict(state_dict, strict=strict)
    return report


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = True
) -> LoadReport:
    """Load the checkpoint file at `path` into `model` (official, bare or `module.`-prefixed format)."""
    state_dict = read_state_dict(path)
    return load_state_dict_into(model, state_dict, strict=strict, source=path)


def load_backbone_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], strict: bool = False
) -> LoadReport:
    """Load ImageNet backbone weights (e.g. `r34mp_pretrained_imagenet.pth.tar`) into the encoder.

    The target is `model.backbone()` (the submodule at `model.backbone_prefix`). Non-strict by
    default, since classifier heads and similar extras differ between releases; a file that
    shares no key with the backbone raises CheckpointError.
    """
    bare = _unwrap_model(model)
    backbone = bare.get_submodule(getattr(bare, "backbone_prefix", "encoder"))
    state_dict = read_state_dict(path)
    backbone_keys = backbone.state_dict().keys()
    if not any(key in backbone_keys for key in state_dict):
        looks_like = identify_variant(state_dict) or "no known model"
        raise CheckpointError(
            f"shares no key with the {getattr(bare, 'variant', '')} backbone "
            f"(it looks like {looks_like}; first keys: {_list_keys(list(state_dict))})",
            path,
        )
    return load_state_dict_into(backbone, state_dict, strict=strict, source=path)


def _cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """model.state_dict() on the CPU, keeping shared tensors shared (the r34 aliases stay one storage)."""
    copies: dict[tuple, Tensor] = {}
    result: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if value.device.type == "cpu":
            result[key] = value
            continue
        identity = (value.data_ptr(), value.dtype, tuple(value.shape), value.stride(), value.device)
        if identity not in copies:
            copies[identity] = value.cpu()
        result[key] = copies[identity]
    return result


def save_checkpoint(
    model: nn.Module, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write `{'state_dict': ...}` (plus `extra` entries) atomically; official tools can load the file.

    `extra` values must be plain data (numbers, strings, tensors, lists, dicts) so that the file
    still loads with `weights_only=True`.
    """
    target = Path(path)
    payload: dict[str, Any] = {"state_dict": _cpu_state_dict(_unwrap_model(model))}
    for key, value in (extra or {}).items():
        if key == "state_dict":
            raise ValueError("extra must not contain 'state_dict'")
        payload[key] = value
    with atomic_open(target, "wb", error_class=CheckpointError) as stream:
        torch.save(payload, stream)
    return target
