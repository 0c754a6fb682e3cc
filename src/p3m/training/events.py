"""What a training run reports while it runs: typed events for whoever renders progress.

The trainer emits them on rank 0 only (`Trainer(on_event=...)`); `p3m.cli` renders them. A
validation pass reports the `p3m.runs` events of its run, tagged with the set's name.

    >>> def on_event(event):
    ...     if isinstance(event, StepFinished): print(event.step, event.loss)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from p3m.runs import Event as RunEvent

__all__ = [
    "StepFinished",
    "TrainingEvent",
    "TrainingFinished",
    "TrainingStarted",
    "ValidationFinished",
    "ValidationProgress",
]


@dataclass(frozen=True)
class TrainingStarted:
    """Training starts (or resumes) at `step` of `total_steps`, on `num_images` training images
    (`world_size` processes, this one on `device`); the trainer logs every `log_every` steps."""

    step: int
    total_steps: int
    steps_per_epoch: int
    num_images: int = 0
    device: str = ""
    log_every: int = 0
    world_size: int = 1


@dataclass(frozen=True)
class StepFinished:
    """An optimiser step is done: `epoch` counts from 1; `values` are the loss parts; `seconds`
    since this run's (or resume's) first step began (None when not measured)."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    values: Mapping[str, float | None]
    seconds: float | None = None


@dataclass(frozen=True)
class ValidationProgress:
    """A progress event of the validation run on `set_name` (after `step` training steps)."""

    set_name: str
    step: int
    event: RunEvent


@dataclass(frozen=True)
class ValidationFinished:
    """Validation on `set_name` is done: the means of its metrics over `num_images` images."""

    set_name: str
    step: int
    epoch: int
    means: Mapping[str, float]
    num_images: int


@dataclass(frozen=True)
class TrainingFinished:
    """The run ended at `step`: finished, or `stopped` on request with a resumable checkpoint."""

    step: int
    stopped: bool


TrainingEvent = TrainingStarted | StepFinished | ValidationProgress | ValidationFinished | TrainingFinished
"""A progress event of a training run (typed: match on the class)."""
