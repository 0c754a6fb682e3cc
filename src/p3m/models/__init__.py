"""P3M-Net models: the backbone-agnostic framework, its variants, a registry and checkpoints;
the weights hub (`p3m.models.hub`: cache, download, import) and its transfer (`transfer`).

Example::

    import p3m.models as models
    model = models.create_model("p3mnet-r34", weights="p3mnet_pretrained_on_p3m10k.pth")
    out = models.predict(model, x)     # x: N x 3 x H x W ImageNet-normalised, H, W multiples of 32
    alpha = out.fusion
    fast = models.optimize_for_inference(model)   # same outputs, much faster on CPU
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from p3m.models.checkpoints import (
    LoadReport,
    identify_variant,
    load_backbone_checkpoint,
    load_checkpoint,
    read_state_dict,
    save_checkpoint,
)
from p3m.models.device import resolve_device
from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from p3m.models.p3mnet import (
    EncoderOutput,
    Integration,
    P3MDecoder,
    P3MModel,
    P3MNet,
    P3MOutput,
    fuse_global_local,
    predict,
)
from p3m.models.registry import CheckpointSpec, ModelSpec, get_spec, list_models, register_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointSpec",
    "EncoderOutput",
    "ExportReport",
    "Integration",
    "LoadReport",
    "ModelSpec",
    "P3MDecoder",
    "P3MModel",
    "P3MNet",
    "P3MOutput",
    "create_model",
    "export_onnx",
    "fuse_global_local",
    "get_spec",
    "identify_variant",
    "list_models",
    "load_backbone_checkpoint",
    "load_checkpoint",
    "optimize_for_inference",
    "predict",
    "read_state_dict",
    "register_model",
    "resolve_device",
    "save_checkpoint",
]


def create_model(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    strict: bool = True,
) -> nn.Module:
    """Build the registered model `name`, load `weights` (a checkpoint path) if given, move it to
    `device` (default: CUDA when available, else CPU) and put it in eval mode.

    Without weights the parameters are randomly initialised (use this for training). The device
    is checked first (`resolve_device`: `DeviceError` for one this machine lacks), then the name.
    """
    target = resolve_device(device)
    spec = get_spec(name)
    model = spec.constructor()
    if weights is not None:
        load_checkpoint(model, weights, strict=strict)
    return model.to(target).eval()


# ONNX export lives in its own module (it needs onnx only when called), and so does the fast
# inference path; both load on first use.
_LAZY = {"export_onnx": "export", "ExportReport": "export", "optimize_for_inference": "optimize"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"p3m.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'p3m.models' has no attribute {name!r}")
