"""The trainer's extension point: hooks that see (and may change) every batch and the model.

P3M-CP (`p3m.training.copy_paste`) plugs in here: ICP rewrites `batch["image"]` in
`before_forward`; FCP registers forward hooks on the model's `fcp_layers` in `setup` and uses the
batch's facemask in `before_forward`.
Every random draw must come from the `rng` passed in, which the trainer derives from
(seed, step, rank): a stopped and resumed run then stays bit-identical.

    class MyHook:
        def setup(self, model, config): ...
        def before_forward(self, batch, rng): return batch
        def after_step(self): ...
        def close(self): ...
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["TrainingHook", "make_copy_paste_hook"]


@runtime_checkable
class TrainingHook(Protocol):
    """Called by the trainer around each optimiser step (on every rank)."""

    def setup(self, model: nn.Module, config: Any) -> None:
        """Once, before training: `model` is the bare model (not the DDP wrapper), in train mode."""

    def before_forward(
        self, batch: dict[str, torch.Tensor], rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """The batch on the training device: 'image' (N x 3 x S x S, ImageNet-normalised), 'alpha',
        'trimap' (N x 1 x S x S, 0..255), optional 'foreground', 'background' (normalised) and
        'facemask' (N x 1 x S x S in {0, 1}, present when cp.mode != none). Return the batch to use."""

    def after_step(self) -> None:
        """After the optimiser step (e.g. to clear per-batch state of forward hooks)."""

    def close(self) -> None:
        """Once, after training: remove forward hooks."""


def make_copy_paste_hook(cp_config: Any, model: nn.Module) -> TrainingHook:
    """Deprecated (one release): use `p3m.training.copy_paste.make_training_hook`."""
    warnings.warn(
        "p3m.training.hooks.make_copy_paste_hook moved to p3m.training.copy_paste.make_training_hook",
        DeprecationWarning,
        stacklevel=2,
    )
    from p3m.training.copy_paste import make_training_hook

    return make_training_hook(cp_config, model)
