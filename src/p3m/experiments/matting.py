"""Cells of a P3M-Net checkpoint on a test set, optionally with its input images transformed.

The task is `p3m.evaluation.model.ModelOnSetTask` (the official HYBRID / RESIZE procedure, the
8-bit prediction the official saver writes, the official metrics), with one addition: a
transform of each input image before the model sees it (the obfuscation study blurs, mosaics
or masks the faces). Models are loaded through a `ModelCache`, only for cells with images left.

    >>> cell = model_cell("full", "P3M-500-P", samples, "p3mnet-r34", Path("r34.pth"), "hybrid", ModelCache())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from p3m.data.layout import Sample
from p3m.errors import CheckpointError
from p3m.evaluation.model import ModelOnSetTask
from p3m.experiments.runner import CellSpec, ModelCache, file_identity
from p3m.runs import Item, Outcome

__all__ = ["ImageTransform", "TransformedModelTask", "identify_checkpoint", "model_cell"]

ImageTransform = Callable[[np.ndarray, Sample], tuple[np.ndarray, dict[str, Any]]]
"""(RGB uint8 image, its sample) -> (the image the model sees, details for the image's record)."""


class TransformedModelTask(ModelOnSetTask):
    """`ModelOnSetTask` with `transform` applied to each image after it is read (on the I/O
    thread); the transform's details are added to the image's outcome."""

    def __init__(
        self,
        model: Any,
        strategy: str,
        out_dir: Path,
        transform: ImageTransform | None = None,
    ) -> None:
        super().__init__(model, strategy, None, out_dir)
        self.transform = transform

    def load(self, item: Item) -> tuple[Any, ...]:
        image, gt, trimap = super().load(item)
        details: dict[str, Any] = {}
        if self.transform is not None:
            image, details = self.transform(image, item.payload)
        return image, gt, trimap, details

    def compute(self, item: Item, loaded: tuple[Any, ...]) -> tuple[Any, ...]:
        image, gt, trimap, details = loaded
        return (*super().compute(item, (image, gt, trimap)), details)

    def write(self, item: Item, result: tuple[Any, ...]) -> Outcome:
        *scored, details = result
        outcome = super().write(item, tuple(scored))
        outcome.details.update(details)
        return outcome


def identify_checkpoint(checkpoint: Path) -> str:
    """The registered variant a checkpoint holds, read from its keys without loading the tensors
    when the file allows (memory-mapped); CheckpointError when it is no known variant."""
    import torch

    from p3m.experiments.runner import identify_model
    from p3m.models import identify_variant, list_models
    from p3m.models.checkpoints import extract_state_dict

    try:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) files cannot be mapped: read them whole
        return identify_model(checkpoint)
    variant = identify_variant(extract_state_dict(payload, checkpoint))
    del payload
    if variant is None or variant not in list_models():
        raise CheckpointError(
            "cannot tell which P3M-Net variant this checkpoint is; name it with {model}",
            checkpoint,
            options={"model": "NAME"},
        )
    return variant


def model_cell(
    row: str,
    group: str,
    samples: Sequence[Sample],
    model: str,
    checkpoint: Path,
    strategy: str,
    models: ModelCache,
    *,
    label: str = "",
    record: Mapping[str, Any] | None = None,
    transform: ImageTransform | None = None,
    transform_settings: Mapping[str, Any] | None = None,
) -> CellSpec:
    """A cell: `model` with the weights in `checkpoint` on `samples` (each image through
    `transform`, described by `transform_settings` for resuming), with the official `strategy`."""
    settings = {
        "model": model,
        "checkpoint": file_identity(checkpoint),
        "strategy": strategy,
        "transform": dict(transform_settings or {}),
    }
    fields: dict[str, Any] = {"model": model, "strategy": strategy, "checkpoint": str(checkpoint)}
    fields.update(record or {})

    def make_task(predictions: Path) -> TransformedModelTask:
        _, network = models.get(model, checkpoint)
        return TransformedModelTask(network, strategy, predictions, transform)

    return CellSpec(
        row=row,
        group=group,
        samples=tuple(samples),
        make_task=make_task,
        settings=settings,
        record=fields,
        label=label,
    )
