"""Evaluate a P3M-Net model on a test set (P3M-500-P, P3M-500-NP, RWP) with the official procedure.

Predictions come from `p3m.inference.strategies.predict_p3mnet` (HYBRID or RESIZE) and are scored
as the official tools do: the 8-bit (truncated) alpha the official saver writes, against the
ground truth, with `p3m.evaluation.metrics`.

    >>> result = evaluate_on_set(model, find_samples(root, "P3M-500-P"), strategy="hybrid")
    >>> result.summary.means["sad"]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from torch import nn

from p3m.data.layout import Sample

__all__ = ["FAST_METRICS", "SetEvaluation", "evaluate_on_set", "table_protocol", "training_protocol"]

logger = logging.getLogger(__name__)

# Metrics cheap enough for validation during training (Grad and Conn are left out).
FAST_METRICS = ("sad", "mse", "mad", "sad_t", "mse_t", "mad_t", "sad_fg", "sad_bg")


@dataclass
class SetEvaluation:
    """Per-image metric rows, their names, the summary, and the images that failed."""

    rows: list[dict[str, float]]
    names: list[str]
    summary: object
    failed: list[str] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        return dict(self.summary.means)  # type: ignore[attr-defined]


def evaluate_on_set(
    model: nn.Module,
    samples: Sequence[Sample],
    strategy: str = "hybrid",
    metrics: Sequence[str] | None = None,
    out_dir: str | PathLike[str] | None = None,
    progress: bool | Any = False,
    description: str = "evaluating",
    accumulate: str = "float64",
) -> SetEvaluation:
    """Predict every sample, optionally write `<name>.png` (8-bit) to `out_dir`, and score it.

    A sample that cannot be read is reported (logged, listed in `failed`) and skipped. `progress`
    is a flag, or a running `rich.progress.Progress` to add a task to. `accumulate` is passed to
    `p3m.evaluation.metrics.summarize` ("eval_py" reproduces the official aggregate).
    """
    from p3m.errors import P3MError
    from p3m.evaluation.metrics import compute_metrics, summarize
    from p3m.inference.strategies import predict_p3mnet
    from p3m.io import read_alpha, read_image, read_trimap, write_png

    was_training = model.training
    model.eval()
    rows: list[dict[str, float]] = []
    names: list[str] = []
    failed: list[str] = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    from contextlib import nullcontext

    from rich.progress import Progress

    # Inside a running progress display (the trainer's) a second live display is not allowed.
    bar = progress if isinstance(progress, Progress) else Progress(disable=not progress, transient=True)
    try:
        with nullcontext() if isinstance(progress, Progress) else bar:
            task = bar.add_task(description, total=len(samples))
            for sample in samples:
                try:
                    image = read_image(sample.image)
                    gt = read_alpha(sample.alpha)
                    trimap = read_trimap(sample.trimap, noncanonical="keep") if sample.trimap else None
                    prediction = predict_p3mnet(model, image, strategy)  # type: ignore[arg-type]
                    alpha_u8 = prediction.alpha_u8_official
                    if out is not None:
                        write_png(out / f"{sample.name}.png", alpha_u8)
                    rows.append(compute_metrics(alpha_u8, gt, trimap, metrics=metrics))
                    names.append(sample.name)
                except P3MError as error:
                    logger.error("%s", error)
                    failed.append(sample.name)
                bar.advance(task)
            bar.remove_task(task)
    finally:
        model.train(was_training)
    return SetEvaluation(rows, names, summarize(rows, names, accumulate=accumulate), failed)  # type: ignore[arg-type]



def training_protocol(checkpoint: str | PathLike[str]) -> str | None:
    """'B' (blurred faces) or 'N' (normal images): what a p3m run trained `checkpoint` on.

    Read from the config saved in a resumable checkpoint, else from the `config.yaml` of the run
    folder holding it (the final `model.pth` carries weights only); None when neither says.
    """
    import torch

    path = Path(checkpoint)
    try:
        # mmap: only the small config entry is touched, not the weights.
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # any unreadable file: the protocol is just unknown
        logger.debug("%s: no training config readable (%s)", path, error)
        payload = None
    config = payload.get("config") if isinstance(payload, dict) else None
    if config is None and (path.parent / "config.yaml").is_file():
        import yaml

        try:
            config = yaml.safe_load((path.parent / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            logger.debug("%s: unreadable (%s)", path.parent / "config.yaml", error)
    data = config.get("data") if isinstance(config, dict) else None
    protocol = data.get("protocol") if isinstance(data, dict) else None
    return protocol if protocol in ("B", "N") else None


def table_protocol(training: str | None, set_name: str) -> str | None:
    """The paper's protocol name ('B:B', 'B:N', 'N:N') of training images x test set, if it is one.

    B:B = trained blurred, tested on P3M-500-P; B:N and N:N are tested on P3M-500-NP.
    """
    test_images = {"P3M-500-P": "B", "P3M-500-NP": "N"}.get(set_name)
    if training is None or test_images is None or (training, test_images) == ("N", "B"):
        return None
    return f"{training}:{test_images}"
