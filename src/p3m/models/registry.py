"""The model registry: every P3M-Net variant p3m can build, by name, with its published checkpoints.

Each backbone module declares its models with `register_model(ModelSpec(...))` at import time;
the registry imports those modules on first use (see `BUILTIN_MODEL_MODULES`), so importing
p3m stays cheap. Tests are parametrised over `list_models()`, so a model is tested the
moment it is registered.

Example::

    from p3m.models import create_model, list_models
    print(list_models())                       # ['p3mnet-r34', ...]
    model = create_model("p3mnet-r34", weights="p3mnet_pretrained_on_p3m10k.pth")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from p3m.errors import ModelNotFoundError

# Where the P3M-Net (Swin-T / ViTAE-S) checkpoints and backbones are published.
P3M_NET_SOURCE_PAGE = "https://github.com/ViTAE-Transformer/P3M-Net"

# The offline default model of `p3m matte` (`p3m.inference.selfie_cf`): a pipeline, not a
# network, so not registered here; named so that asking it for weights says why there are none.
CLASSICAL_PIPELINE = "selfie-cf"

# Modules whose import registers models. Add yours here (Swin-T and ViTAE-S plug in this way).
BUILTIN_MODEL_MODULES: tuple[str, ...] = (
    "p3m.models.p3mnet_r34",
    "p3m.models.backbones.swin",
    "p3m.models.backbones.vitae",
    "p3m.models.ablation",
)


@dataclass(frozen=True)
class CheckpointSpec:
    """A published checkpoint: where it comes from and how to verify it.

    `sha256` is None when no trustworthy checksum is known; downloaders must then say so.
    """

    file_name: str
    url: str | None
    source_page: str
    sha256: str | None
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A buildable model: `constructor()` returns the untrained nn.Module.

    `checkpoints` are published weights of the whole model; `backbone_weights` are ImageNet
    weights of the encoder alone (for training); `num_parameters` is the distinct parameter count (what papers report).
    `ablation_of` names the full model of which this is a Table 7 ablation (None otherwise).
    """

    name: str
    constructor: Callable[[], nn.Module]
    description: str
    min_size: int = 32
    size_multiple: int = 32
    checkpoints: tuple[CheckpointSpec, ...] = field(default_factory=tuple)
    backbone_weights: tuple[CheckpointSpec, ...] = field(default_factory=tuple)
    num_parameters: int | None = None
    ablation_of: str | None = None

    @property
    def input_constraints(self) -> str:
        return f"N x 3 x H x W float, ImageNet-normalised; H, W multiples of {self.size_multiple}, >= {self.min_size}"


_REGISTRY: dict[str, ModelSpec] = {}
_builtins_loaded = False


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add `spec` to the registry (an existing name raises unless `replace`); returns it."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] != spec:
        raise ValueError(f"a model called {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    for module_name in BUILTIN_MODEL_MODULES:
        importlib.import_module(module_name)
    _builtins_loaded = True


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec registered as `name`; ModelNotFoundError (listing the known names) otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        if name == CLASSICAL_PIPELINE:
            raise ModelNotFoundError(
                f"{name} is the classical matting pipeline, not a network: it has no weights, "
                f"checkpoint or ONNX export (networks: {known})"
            ) from None
        raise ModelNotFoundError(f"unknown model {name!r} (known models: {known})") from None
