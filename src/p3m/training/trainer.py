"""The P3M-Net trainer: the official recipe on CPU or GPU, one process or many (DDP via torchrun).

What it does per step: read an augmented batch (p3m.data), run the model (autocast on CUDA when
`run.amp`), compute the official total loss (p3m.training.losses), step Adam. Around that:
resumable checkpoints every `run.checkpoint_every` steps and at the end (official
`{'state_dict'}` plus optimiser, scheduler, scaler, RNG states and step; written atomically),
JSON-lines logs, progress events (`p3m.training.events`, on rank 0, rendered by `p3m.cli`), and
validation on P3M-500-P / P3M-500-NP every `validation.every_epochs` epochs. Only rank 0 writes
files. The process group lives in `p3m.training.distributed`, the RNG and checkpoint state in
`p3m.training.state`.

Exact resume: augmentation draws depend on (seed, epoch, index) only, the sampler skips the
batches already done, and the torch / numpy / python RNG states of every rank are restored, so a
run stopped and resumed ends with the same weights as one that was never interrupted.

    >>> result = train(load_config("configs/smoke.yaml", ["data.root=synthetic"]), on_event=print)
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from p3m.errors import CheckpointError, ConfigError, DatasetError
from p3m.training.config import TrainConfig, config_to_dict
from p3m.training.distributed import DistContext, any_rank, bare, barrier, setup_distributed
from p3m.training.events import (
    StepFinished,
    TrainingEvent,
    TrainingFinished,
    TrainingStarted,
    ValidationFinished,
    ValidationProgress,
)
from p3m.training.state import (
    read_resumable,
    restore_state,
    resumable_state,
    seed_everything,
    seed_worker,
)

__all__ = ["TrainResult", "Trainer", "available_cpus", "cap_workers", "load_backbone_weights", "train"]

logger = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"
FINAL_CHECKPOINT = "final.pth"
MODEL_FILE = "model.pth"


@dataclass
class TrainResult:
    """Where the run wrote its files and how it ended (on rank 0; other ranks get the same step)."""

    out_dir: Path
    step: int
    epoch: int
    final_checkpoint: Path | None
    losses: list[float] = field(default_factory=list)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- model set-up


def load_backbone_weights(model: nn.Module, path: str | PathLike[str]) -> int:
    """Load an ImageNet checkpoint into the model's backbone (`model.backbone()`); returns tensors loaded.

    Accepts official r34mp / Swin-T / ViTAE-S files (`state_dict`/`model` wrapped or bare,
    `module.` prefixed). Classifier heads and other non-matching keys are skipped; a file that
    matches less than half of the backbone raises CheckpointError.
    """
    from p3m.models.checkpoints import read_state_dict

    backbone = model.backbone() if hasattr(model, "backbone") else model
    state = read_state_dict(path)
    for prefix in ("backbone.", "encoder.", "resnet."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    target = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    if len(usable) < max(1, len(target) // 2):
        raise CheckpointError(
            f"does not look like a backbone of {getattr(model, 'variant', 'this model')}: "
            f"only {len(usable)} of {len(target)} backbone tensors match by name and shape",
            path,
        )
    backbone.load_state_dict(usable, strict=False)
    logger.info("loaded %d of %d backbone tensors from %s", len(usable), len(target), path)
    return len(usable)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else `os.cpu_count()`)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cap_workers(requested: int, processes_here: int = 1) -> int:
    """Data-loader workers per rank: `requested`, at most this machine's CPUs shared by the
    `processes_here` ranks running on it (at least 1 unless 0 = loading in the main process).

    More workers than CPUs only contend (torch warns about it at every epoch); the cap is logged.
    """
    if requested <= 0:
        return 0
    cpus = available_cpus()
    share = max(1, cpus // max(1, processes_here))
    if requested <= share:
        return requested
    per_rank = f" shared by {processes_here} processes" if processes_here > 1 else ""
    logger.warning(
        "data.workers=%d capped to %d data-loading process%s per rank: this machine has %d CPU%s%s",
        requested, share, "" if share == 1 else "es", cpus, "" if cpus == 1 else "s", per_rank,
    )
    return share


def _random_backbone_warning(model_name: str) -> str:
    """What to say when a training starts without ImageNet backbone weights (what the paper uses)."""
    from p3m.models.registry import get_spec

    text = (
        f"run.backbone_weights is not set: the {model_name} backbone starts from random initialisation, "
        "not from the ImageNet weights the paper trains from"
    )
    weights = get_spec(model_name).backbone_weights
    if weights:
        spec = weights[0]
        text += f"; get {spec.file_name} from {spec.url or spec.source_page}"
        if spec.url:
            text += f" (see {spec.source_page})"
    else:
        text += "; give an ImageNet checkpoint of its backbone"
    return text + " and pass --backbone-weights FILE (or --set run.backbone_weights=FILE)"


# --------------------------------------------------------------------------- the trainer


def _official_log_line(
    values: dict[str, float | None], epoch: int, step: int, lr: float, config: TrainConfig, steps_per_epoch: int
) -> str:
    """The official train.py log line (the four parts before weighting, 5 decimals)."""
    composition = values["fusion_comp"]
    return (
        f"P3M-NET-Epoch[{epoch + 1}/{config.optim.epochs}]({step - epoch * steps_per_epoch}/{steps_per_epoch}) "
        f"Lr:{lr:.8f} Loss:{values['loss']:.5f} Global:{values['global']:.5f} Local:{values['local']:.5f} "
        f"Fusion-alpha:{values['fusion_alpha']:.5f} "
        f"Fusion-comp:{'-' if composition is None else f'{composition:.5f}'}"
    )


class _JsonLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class Trainer:
    """One training run; `run()` trains until the epochs (or `optim.max_steps`) are done."""

    def __init__(
        self,
        config: TrainConfig,
        resume: str | PathLike[str] | None = None,
        hooks: list[Any] | None = None,
        on_event: Callable[[TrainingEvent], None] | None = None,
    ) -> None:
        self.config = config.validate()
        self.resume_path = Path(resume) if resume is not None else None
        self.extra_hooks = list(hooks or [])
        self.on_event = on_event
        self.dist: DistContext

    def _emit(self, event: TrainingEvent) -> None:
        if self.on_event is not None and self.dist.is_main:
            self.on_event(event)

    # ------------------------------------------------------------------ set-up

    def _samples(self) -> tuple[list[Any], dict[str, list[Any]]]:
        from p3m.data.layout import check_layout, find_samples

        data = self.config.data
        if not data.root:
            raise ConfigError(
                "data.root (the data set folder) is not set: set it with {data_root}",
                options={"data_root": "DIR"},
                python_wording={"data_root": "data.root = {value} in the TrainConfig"},
            )
        sets = ["train", *self.config.validation.sets] if self._validates() else ["train"]
        report = check_layout(data.root, sets, data.protocol, data.normal_images, deep=data.check_files)
        report.raise_if_problems()
        train = find_samples(data.root, "train", data.protocol, data.normal_images)
        if data.limit is not None:
            train = train[: data.limit]
        validation = {}
        if self._validates():
            for name in self.config.validation.sets:
                samples = find_samples(data.root, name)
                if self.config.validation.limit is not None:
                    samples = samples[: self.config.validation.limit]
                validation[name] = samples
        return train, validation

    def _validates(self) -> bool:
        v = self.config.validation
        return bool(v.sets) and (v.every_epochs > 0 or v.at_end or v.at_start)

    def _build_model(self) -> nn.Module:
        from p3m.models import create_model

        torch.manual_seed(self.config.run.seed)  # identical initialisation on every rank
        model = create_model(self.config.model, device="cpu")
        if self.config.run.init_weights:
            from p3m.models.checkpoints import load_checkpoint

            load_checkpoint(model, self.config.run.init_weights)
        elif self.config.run.backbone_weights:
            load_backbone_weights(model, self.config.run.backbone_weights)
        elif self.resume_path is None and self.dist.is_main:
            logger.warning(_random_backbone_warning(self.config.model))
        return model.to(self.dist.device).train()

    def _build_loader(self, train_samples: list[Any]) -> None:
        from torch.utils.data import DataLoader

        from p3m.data.datasets import EpochSampler, MattingTrainDataset
        from p3m.data.transforms import AugmentConfig

        data, optim = self.config.data, self.config.optim
        if optim.batch_size % self.dist.world_size:
            raise ConfigError(
                f"optim.batch_size={optim.batch_size} is not divisible by the {self.dist.world_size} processes"
            )
        self.batch_per_rank = optim.batch_size // self.dist.world_size
        augment = AugmentConfig(
            crop_sizes=tuple(data.crop_sizes),
            output_size=data.output_size,
            trimap_kernel_range=(data.trimap_kernel_range[0], data.trimap_kernel_range[1]),
            transition_probability=data.transition_probability,
            flip_probability=data.flip_probability,
        )
        self.dataset = MattingTrainDataset(
            train_samples,
            augment,
            seed=self.config.run.seed,
            use_composition=data.use_composition,
            use_facemask=self.config.cp.mode != "none",
        )
        if data.use_composition and not self.dataset.use_composition:
            logger.warning("the training set has no complete fg/ and bg/ folders: the composition loss is left out")
        self.sampler = EpochSampler(
            self.dataset, self.dist.world_size, self.dist.rank, seed=self.config.run.seed
        )
        self.steps_per_epoch = self.sampler.num_samples // self.batch_per_rank
        if self.steps_per_epoch == 0:
            raise DatasetError(
                f"{len(self.dataset)} training samples are fewer than one batch "
                f"({optim.batch_size} over {self.dist.world_size} process(es))",
                data.root,
            )
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            self.dataset,
            batch_size=self.batch_per_rank,
            sampler=self.sampler,
            num_workers=cap_workers(data.workers, self._processes_here()),
            drop_last=True,
            pin_memory=self.dist.device.type == "cuda",
            worker_init_fn=seed_worker,
            generator=self.loader_generator,
            persistent_workers=False,
        )

    def _processes_here(self) -> int:
        """Ranks on this machine (torchrun's LOCAL_WORLD_SIZE; the world size without it)."""
        if not self.dist.enabled:
            return 1
        return int(os.environ.get("LOCAL_WORLD_SIZE", self.dist.world_size))

    def _build_optimizer(self) -> None:
        optim = self.config.optim
        parameters = list(bare(self.model).parameters())  # shared (aliased) tensors appear once
        self.optimizer = torch.optim.Adam(
            parameters, lr=optim.lr, betas=(optim.betas[0], optim.betas[1]), weight_decay=optim.weight_decay
        )
        # Over all epochs, not max_steps: stopping early (and resuming) leaves the schedule unchanged.
        total = optim.epochs * self.steps_per_epoch
        if optim.schedule == "cosine":

            def factor(step: int) -> float:
                return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))

        else:

            def factor(step: int) -> float:
                return 1.0

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.use_amp = self.config.run.amp and self.dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_payload(self, step: int) -> dict[str, Any]:
        return resumable_state(
            self.dist, self.optimizer, self.scheduler, self.scaler,
            step=step, steps_per_epoch=self.steps_per_epoch, num_train_samples=len(self.dataset),
            variant=self.config.model, config=config_to_dict(self.config),
        )

    def save(self, step: int, path: Path) -> None:
        """Write a resumable checkpoint (all ranks take part in gathering RNG states; rank 0 writes)."""
        from p3m.models.checkpoints import save_checkpoint

        payload = self._checkpoint_payload(step)
        if self.dist.is_main:
            save_checkpoint(bare(self.model), path, extra=payload)
            logger.info("checkpoint written: %s", path)
            self.log.write({"event": "checkpoint", "step": step, "path": str(path)})
        barrier(self.dist)

    def _prune_checkpoints(self, keep: int = 2) -> None:
        if not self.dist.is_main:
            return
        files = sorted((self.out_dir / CHECKPOINT_DIR).glob("step_*.pth"))
        for old in files[:-keep]:
            old.unlink(missing_ok=True)

    def _resume(self) -> int:
        path = self.resume_path
        assert path is not None
        payload = read_resumable(path, self.config.model, self.steps_per_epoch)
        step = restore_state(payload, self.dist, bare(self.model), self.optimizer, self.scheduler, self.scaler, path)
        logger.info("resumed from %s at step %d", path, step)
        return step

    # ------------------------------------------------------------------ validation

    def validate(self, step: int, epoch: int) -> dict[str, dict[str, float]]:
        """Rank 0 evaluates the bare model on each validation set; others wait."""
        from p3m.evaluation.model import FAST_METRICS, evaluate_on_set

        results: dict[str, dict[str, float]] = {}
        if self.dist.is_main:
            for name, samples in self.validation_samples.items():
                evaluation = evaluate_on_set(
                    bare(self.model),
                    samples,
                    strategy=self.config.validation.strategy,
                    metrics=FAST_METRICS,
                    on_event=lambda event, name=name: self._emit(ValidationProgress(name, step, event)),
                )
                for skipped in evaluation.skipped:
                    logger.warning("validation on %s: %s", name, skipped.reason)
                means = evaluation.means()
                results[name] = means
                self._emit(ValidationFinished(name, step, epoch, means, len(evaluation.rows)))
                self.log.write(
                    {"event": "validation", "step": step, "epoch": epoch, "set": name,
                     "strategy": self.config.validation.strategy, "num_images": len(evaluation.rows),
                     **{k: float(v) for k, v in means.items()}}
                )
                logger.info("validation %s after epoch %d: %s", name, epoch,
                            " ".join(f"{k}={v:.4f}" for k, v in means.items()))
        barrier(self.dist)
        self.model.train()
        return results

    # ------------------------------------------------------------------ the loop

    @property
    def total_steps(self) -> int:
        full = self.config.optim.epochs * self.steps_per_epoch
        max_steps = self.config.optim.max_steps
        return full if max_steps is None else min(full, max_steps)

    def _batch_to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        non_blocking = self.dist.device.type == "cuda"
        return {key: value.to(self.dist.device, non_blocking=non_blocking) for key, value in batch.items()}

    def _train_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float | None]:
        from p3m.training.losses import p3m_loss

        batch = self._batch_to_device(batch)
        rng = np.random.default_rng([self.config.run.seed, step, self.dist.rank])
        for hook in self.hooks:
            batch = hook.before_forward(batch, rng)
        with torch.autocast(device_type=self.dist.device.type, dtype=torch.float16, enabled=self.use_amp):
            output = self.model(batch["image"])
        # Models without dBFI (Table 7 ablations) return None for the side outputs.
        output = tuple(None if tensor is None else tensor.float() for tensor in output)
        parts = p3m_loss(
            output,
            alpha=batch["alpha"],
            trimap=batch["trimap"],
            image=batch["image"] if "foreground" in batch else None,
            foreground=batch.get("foreground"),
            background=batch.get("background"),
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        for hook in self.hooks:
            hook.after_step()
        values = parts.as_floats()
        if not math.isfinite(values["loss"] or 0.0):
            raise FloatingPointError(f"training loss is {values['loss']} at step {step}")
        return values

    def request_stop(self) -> None:
        """Finish the current step, write a resumable checkpoint and return (what Ctrl-C does)."""
        self._stop_requested = True

    def _on_sigint(self, signum: int, frame: Any) -> None:
        logger.warning("interrupted: stopping after this step with a resumable checkpoint (Ctrl-C again to abort)")
        self.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _should_stop(self) -> bool:
        return any_rank(self.dist, self._stop_requested)  # every rank must stop at the same step

    def run(self) -> TrainResult:
        """Train; returns the final step and, on rank 0, the written files and validation means."""
        self._stop_requested = False
        handler_installed = False
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            handler_installed = True
        try:
            return self._run()
        finally:
            if handler_installed:
                signal.signal(signal.SIGINT, previous_handler)

    def _run(self) -> TrainResult:
        config = self.config
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        self.dist = setup_distributed(config.run.device)
        seed_everything(config.run.seed + self.dist.rank)
        self.out_dir = Path(config.run.out_dir)
        train_samples, self.validation_samples = self._samples()
        if self.dist.is_main:
            earlier = self.out_dir / MODEL_FILE
            if self.resume_path is None and (earlier.exists() or (self.out_dir / LOG_FILE).exists()):
                logger.warning(
                    "%s holds an earlier run: its %s and checkpoints are replaced as this run saves, "
                    "and %s is appended to (--resume continues a run instead)",
                    self.out_dir, MODEL_FILE, LOG_FILE,
                )
            (self.out_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
            import yaml

            from p3m.io import atomic_write_text

            atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
        self.log = _JsonLog(self.out_dir / LOG_FILE if self.dist.is_main else None)
        self.model = self._build_model()
        self._build_loader(train_samples)
        if self.dist.enabled:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            # Some registered parameters never get a gradient (e.g. the unused ImageNet head of r34).
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=True
            )
        self._build_optimizer()
        self.hooks = list(self.extra_hooks)
        if config.cp.mode != "none":
            from p3m.training.copy_paste import make_training_hook

            self.hooks.append(make_training_hook(config.cp, bare(self.model)))
        for hook in self.hooks:
            hook.setup(bare(self.model), config)

        step = self._resume() if self.resume_path is not None else 0
        total = self.total_steps
        self.log.write({
            "event": "start", "step": step, "total_steps": total, "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.dist.world_size, "device": str(self.dist.device), "model": config.model,
            "train_samples": len(self.dataset), "composition_loss": self.dataset.use_composition,
            "amp": self.use_amp, "protocol": config.data.protocol,
        })
        if not self.dataset.use_composition:
            self.log.write({"event": "note", "message": "composition loss left out (no fg/bg)"})
        losses: list[float] = []
        validation: dict[str, dict[str, float]] = {}
        if self.validation_samples and config.validation.at_start and step == 0:
            validation = self.validate(0, 0)
        self._emit(TrainingStarted(
            step, total, self.steps_per_epoch, num_images=len(self.dataset), device=str(self.dist.device),
            log_every=config.run.log_every, world_size=self.dist.world_size,
        ))
        try:
            step, stopping, during = self._epochs(step, total, losses)
            validation = during or validation
            if stopping:  # on request (Ctrl-C): a resumable checkpoint, no final model
                final = self.out_dir / CHECKPOINT_DIR / f"step_{step:08d}.pth"
                self.save(step, final)
                self.log.write({"event": "stopped", "step": step, "checkpoint": str(final)})
                logger.warning("stopped at step %d; resume with --resume %s", step, final)
                self._emit(TrainingFinished(step, stopped=True))
                return TrainResult(self.out_dir, step, step // self.steps_per_epoch,
                                   final if self.dist.is_main else None, losses, validation)
            final = self.out_dir / CHECKPOINT_DIR / FINAL_CHECKPOINT
            self.save(step, final)
            if self.dist.is_main:
                from p3m.models.checkpoints import save_checkpoint

                save_checkpoint(bare(self.model), self.out_dir / MODEL_FILE)
            if self.validation_samples and config.validation.at_end:
                validation = self.validate(step, step // self.steps_per_epoch)
            self.log.write({"event": "end", "step": step, "seconds": round(time.monotonic() - self._started, 3)})
            self._emit(TrainingFinished(step, stopped=False))
        finally:
            for hook in self.hooks:
                hook.close()
        return TrainResult(
            out_dir=self.out_dir,
            step=step,
            epoch=step // self.steps_per_epoch,
            final_checkpoint=final if self.dist.is_main else None,
            losses=losses,
            validation=validation,
        )

    def _epochs(self, step: int, total: int, losses: list[float]) -> tuple[int, bool, dict[str, dict[str, float]]]:
        """Train from `step` to `total` (or a stop request); returns (step, stopped, last validation)."""
        config = self.config
        validation: dict[str, dict[str, float]] = {}
        last_validated_epoch = -1
        self._started = time.monotonic()
        while step < total:
            epoch = step // self.steps_per_epoch
            skip = (step - epoch * self.steps_per_epoch) * self.batch_per_rank
            self.sampler.set_epoch(epoch, skip=skip)
            # Worker seeds per epoch; the data itself depends only on (seed, epoch, index).
            self.loader_generator.manual_seed(config.run.seed * 100003 + epoch)
            for batch in self.loader:
                values = self._train_step(batch, step)
                step += 1
                losses.append(float(values["loss"] or 0.0))
                self._emit(StepFinished(step, total, epoch + 1, losses[-1], values,
                                        seconds=time.monotonic() - self._started))
                if step % config.run.log_every == 0 or step == total or step == 1:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.log.write({"event": "train", "step": step, "epoch": epoch + 1, "lr": lr,
                                    "seconds": round(time.monotonic() - self._started, 3), **values})
                    if self.dist.is_main:
                        logger.info(_official_log_line(values, epoch, step, lr, config, self.steps_per_epoch))
                if config.run.checkpoint_every and step % config.run.checkpoint_every == 0 and step < total:
                    self.save(step, self.out_dir / CHECKPOINT_DIR / f"step_{step:08d}.pth")
                    self._prune_checkpoints()
                if step >= total:
                    break
                if self._should_stop():
                    return step, True, validation
            finished_epoch = step // self.steps_per_epoch
            every = config.validation.every_epochs
            if (
                self.validation_samples and every and finished_epoch > last_validated_epoch
                and step % self.steps_per_epoch == 0 and finished_epoch % every == 0
                and (step < total or not config.validation.at_end)
            ):
                validation = self.validate(step, finished_epoch)
                last_validated_epoch = finished_epoch
        return step, False, validation


def train(
    config: TrainConfig,
    resume: str | PathLike[str] | None = None,
    hooks: list[Any] | None = None,
    on_event: Callable[[TrainingEvent], None] | None = None,
) -> TrainResult:
    """Run a training as described by `config` (resuming from a checkpoint if given).

    `on_event` receives the progress events of `p3m.training.events` (on rank 0).
    """
    return Trainer(config, resume=resume, hooks=hooks, on_event=on_event).run()
