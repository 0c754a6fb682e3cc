"""The ablation models of the paper's Table 7: P3M-Net without some integration modules.

Table 7 of "Rethinking Portrait Matting with Privacy Preserving" (Ma, Li et al., IJCV 2023)
ablates the three integration modules of P3M-Net(ResNet-34): the bare multi-task framework
("Basic": shared encoder, segmentation decoder, matting decoder), then +TFI, +TFI+sBFI,
+TFI+dBFI and the full model. p3m registers these rows for every backbone:

=================  =====================  ========================  ========================
row                ResNet-34              Swin-T                    ViTAE-S
=================  =====================  ========================  ========================
Basic              basic-r34              basic-swin-t              basic-vitae-s
+TFI               p3mnet-r34-tfi         p3mnet-swin-t-tfi         p3mnet-vitae-s-tfi
+TFI+sBFI          p3mnet-r34-tfi-sbfi    p3mnet-swin-t-tfi-sbfi    p3mnet-vitae-s-tfi-sbfi
+TFI+dBFI          p3mnet-r34-tfi-dbfi    p3mnet-swin-t-tfi-dbfi    p3mnet-vitae-s-tfi-dbfi
+TFI+sBFI+dBFI     p3mnet-r34             p3mnet-swin-t             p3mnet-vitae-s
=================  =====================  ========================  ========================

Only the modules go; every decoder keeps its widths, and what flows where a module was is
described (and justified by the parameter counts) in `p3m.models.p3mnet.Integration`. The
ResNet-34 counts equal Table 7's: 37.67M, 38.93M, 39.17M, 39.24M and 39.48M. No checkpoints
of the ablations were published: train them with `p3m train` (`model: basic-r34`, ...).

Example::

    from p3m.models.ablation import ablation_parameter_counts, ablation_model_name
    ablation_model_name("tfi-sbfi", "swin-t")      # 'p3mnet-swin-t-tfi-sbfi'
    ablation_parameter_counts("r34")["basic"]      # 37666860
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from p3m.errors import ModelNotFoundError
from p3m.models.p3mnet import Integration

__all__ = [
    "ABLATIONS",
    "BACKBONES",
    "Ablation",
    "ablation_model_name",
    "ablation_parameter_counts",
    "get_ablation",
    "paper_label",
]


@dataclass(frozen=True)
class Ablation:
    """One row of Table 7: its key, its label in the paper's layout, the modules it keeps and
    the parameter count the paper reports for it with the ResNet-34 backbone (millions)."""

    key: str
    label: str
    integration: Integration
    paper_parameters_m: float


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("basic", "Basic", Integration(tfi=False, sbfi=False, dbfi=False), 37.67),
    Ablation("tfi", "+TFI", Integration(tfi=True, sbfi=False, dbfi=False), 38.93),
    Ablation("tfi-sbfi", "+TFI+sBFI", Integration(tfi=True, sbfi=True, dbfi=False), 39.17),
    Ablation("tfi-dbfi", "+TFI+dBFI", Integration(tfi=True, sbfi=False, dbfi=True), 39.24),
    Ablation("full", "+TFI+sBFI+dBFI (P3M-Net)", Integration(), 39.48),
)
"""Table 7's rows, in the paper's order."""

BACKBONES: tuple[str, ...] = ("r34", "swin-t", "vitae-s")
"""Backbone tags as they appear in the registry names."""

# Distinct parameter counts (what papers report), checked against the built models by
# tests/test_registry.py. The r34 ones are Table 7's; the full models' are in their modules.
_NUM_PARAMETERS: dict[str, int] = {
    "basic-r34": 37_666_860,
    "p3mnet-r34-tfi": 38_929_452,
    "p3mnet-r34-tfi-sbfi": 39_171_628,
    "p3mnet-r34-tfi-dbfi": 39_235_884,
    "basic-swin-t": 41_068_942,
    "p3mnet-swin-t-tfi": 43_909_006,
    "p3mnet-swin-t-tfi-sbfi": 44_444_302,
    "p3mnet-swin-t-tfi-dbfi": 44_592_910,
    "basic-vitae-s": 25_655_948,
    "p3mnet-vitae-s-tfi": 26_918_540,
    "p3mnet-vitae-s-tfi-sbfi": 27_156_620,
    "p3mnet-vitae-s-tfi-dbfi": 27_224_972,
}

_BACKBONE_LABELS = {"r34": "ResNet-34", "swin-t": "Swin-T", "vitae-s": "ViTAE-S"}


def get_ablation(key: str) -> Ablation:
    """The Table 7 row called `key` (basic, tfi, tfi-sbfi, tfi-dbfi, full); ModelNotFoundError otherwise."""
    for ablation in ABLATIONS:
        if ablation.key == key:
            return ablation
    known = ", ".join(a.key for a in ABLATIONS)
    raise ModelNotFoundError(f"unknown ablation {key!r} (Table 7 rows: {known})")


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ModelNotFoundError(
            f"unknown backbone {backbone!r} (backbones: {', '.join(BACKBONES)})"
        )


def ablation_model_name(key: str, backbone: str = "r34") -> str:
    """Registry name of the Table 7 row `key` on `backbone`, e.g. ("basic", "r34") -> basic-r34."""
    _check_backbone(backbone)
    return get_ablation(key).integration.variant_name(backbone)


def ablation_parameter_counts(backbone: str = "r34") -> dict[str, int]:
    """Distinct parameter count of each Table 7 row on `backbone`, keyed by row (basic, ...,
    full), in the paper's order. Counts include the unused `resnet.fc` of the r34 models, as
    the paper's do (e.g. r34: basic 37,666,860 = 37.67M ... full 39,478,060 = 39.48M)."""
    from p3m.models.registry import get_spec

    _check_backbone(backbone)
    counts = {}
    for ablation in ABLATIONS:
        spec = get_spec(ablation.integration.variant_name(backbone))
        if spec.num_parameters is None:  # not the case for the built-in models
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                counts[ablation.key] = int(spec.constructor().num_parameters())
        else:
            counts[ablation.key] = spec.num_parameters
    return counts


def paper_label(name: str) -> str | None:
    """The paper-style label of a built-in model: "P3M-Net (ResNet-34)", "Basic (Swin-T)",
    "+TFI+sBFI (ViTAE-S)", ...; None for names that are no backbone/row combination."""
    for backbone in BACKBONES:
        for ablation in ABLATIONS:
            if ablation.integration.variant_name(backbone) == name:
                row = "P3M-Net" if ablation.integration.is_full else ablation.label
                return f"{row} ({_BACKBONE_LABELS[backbone]})"
    return None


def _constructor(backbone: str) -> Callable[..., nn.Module]:
    if backbone == "r34":
        from p3m.models.p3mnet_r34 import P3MNetR34

        return P3MNetR34
    if backbone == "swin-t":
        from p3m.models.backbones.swin import P3MNetSwinT

        return P3MNetSwinT
    from p3m.models.backbones.vitae import P3MNetViTAES

    return P3MNetViTAES


_MODULE_LABELS = {"tfi": "TFI", "sbfi": "sBFI", "dbfi": "dBFI"}


def _describe(integration: Integration) -> str:
    """E.g. "with TFI and sBFI, without dBFI"."""
    kept = [_MODULE_LABELS[m] for m in integration.modules]
    left_out = [label for m, label in _MODULE_LABELS.items() if m not in integration.modules]
    if not kept:
        return "without TFI, sBFI or dBFI"
    return f"with {' and '.join(kept)}, without {' or '.join(left_out)}"


def _register() -> None:
    from p3m.models.registry import ModelSpec, get_spec, register_model

    for backbone in BACKBONES:
        constructor = _constructor(backbone)
        full = get_spec(Integration().variant_name(backbone))
        for ablation in ABLATIONS:
            if ablation.integration.is_full:
                continue
            name = ablation.integration.variant_name(backbone)
            modules = _describe(ablation.integration)
            count = _NUM_PARAMETERS[name]
            register_model(
                ModelSpec(
                    name=name,
                    constructor=functools.partial(constructor, integration=ablation.integration),
                    description=(
                        f"Table 7 ablation \"{ablation.label}\" of P3M-Net({_BACKBONE_LABELS[backbone]}): "
                        f"shared encoder, segmentation and matting decoders {modules}, "
                        f"{count / 1e6:.2f}M parameters; no published checkpoint (train it with p3m train)"
                    ),
                    min_size=full.min_size,
                    size_multiple=full.size_multiple,
                    checkpoints=(),
                    # The encoder is the full model's, so are its ImageNet weights.
                    backbone_weights=full.backbone_weights,
                    num_parameters=count,
                    ablation_of=full.name,
                )
            )


_register()
