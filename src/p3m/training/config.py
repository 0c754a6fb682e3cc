"""Training configuration: dataclasses loaded from YAML, validated, with `key=value` overrides.

The defaults are the paper's recipe (Adam, lr 1e-5, batch 8, 150 epochs, crops 512/768/1024 ->
512, trimap kernel 15..30). A YAML file sets any subset; `--set optim.lr=1e-4` style overrides
are applied after it (values parsed as YAML scalars/lists).

    >>> config = load_config("configs/p3mnet_r34.yaml", overrides=["optim.epochs=10"])
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from p3m.errors import ConfigError
from p3m.vocabulary import CPMode, LrSchedule, TestSet, TestStrategy, TrainingImages, values

logger = logging.getLogger(__name__)

__all__ = [
    "CopyPasteSection",
    "DataSection",
    "OptimSection",
    "RunSection",
    "TrainConfig",
    "ValidationSection",
    "apply_overrides",
    "set_values",
    "config_to_dict",
    "load_config",
    "training_protocol",
]



@dataclass
class DataSection:
    """Where the data is and how it is augmented."""

    root: str | None = None
    """P3M-10k root (train/, validation/P3M-500-P, validation/P3M-500-NP)."""
    protocol: str = "B"
    """Training images: B = blurred (train/blurred_image), N = normal (see `normal_images`)."""
    normal_images: str | None = None
    """Folder of the normal training images for protocol N (default ROOT/train/original_image)."""
    workers: int = 4
    crop_sizes: list[int] = field(default_factory=lambda: [512, 768, 1024])
    output_size: int = 512
    trimap_kernel_range: list[int] = field(default_factory=lambda: [15, 30])
    transition_probability: float = 0.5
    flip_probability: float = 0.5
    use_composition: bool = True
    """Use train/fg + train/bg for the composition loss when present (left out otherwise)."""
    limit: int | None = None
    """Use only the first N training samples (smoke runs)."""
    check_files: bool = False
    """Before training, also decode every file (unreadable or truncated files, size mismatches)."""


@dataclass
class OptimSection:
    """Optimiser and schedule (the official recipe: Adam, lr 1e-5, batch 8, 150 epochs)."""

    lr: float = 1e-5
    batch_size: int = 8
    """Global batch size, split evenly across processes."""
    epochs: int = 150
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "constant"
    """constant (official) or cosine (decay to 0 over the run)."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (smoke runs, tests); None = all epochs."""


@dataclass
class ValidationSection:
    """Validation on P3M-500-P and P3M-500-NP with the project's metrics."""

    every_epochs: int = 10
    """0 disables validation during training (it still runs at the end unless `at_end` is false)."""
    sets: list[str] = field(default_factory=lambda: [TestSet.P.value, TestSet.NP.value])
    strategy: str = "hybrid"
    """hybrid or resize: the official test procedures (p3m.inference)."""
    limit: int | None = None
    """Validate on the first N images of each set only."""
    at_end: bool = True
    at_start: bool = False
    """Also validate the untrained (or initial) model before the first step."""


@dataclass
class CopyPasteSection:
    """P3M-CP (section 5 of the paper): copy real faces onto the obfuscated ones during training."""

    mode: str = "none"
    """none, icp (image level) or fcp (feature level)."""
    layer: str | None = None
    """For fcp: the encoder layer (one of the model's `fcp_layers`)."""
    probability: float = 0.5
    sources: str | None = None
    """Folder of public face images (with masks) to copy from."""


@dataclass
class RunSection:
    """Output, checkpoints, logging, devices."""

    out_dir: str = "runs/p3m"
    seed: int = 0
    device: str = "auto"
    """auto (CUDA if available), cpu, cuda, cuda:1 ..."""
    amp: bool = True
    """Mixed precision; used on CUDA only."""
    checkpoint_every: int = 1000
    """Save a resumable checkpoint every N optimiser steps (0 = only at the end)."""
    log_every: int = 10
    backbone_weights: str | None = None
    """ImageNet checkpoint of the backbone (r34mp / Swin-T / ViTAE-S); None = random init."""
    init_weights: str | None = None
    """A full P3M-Net checkpoint to start from (fine-tuning); None = backbone_weights / random."""
    progress: bool = True
    threads: int | None = None
    """torch intra-op threads per process (None = torch default)."""


@dataclass
class TrainConfig:
    """A whole training run."""

    model: str = "p3mnet-r34"
    """A registered model name (`p3m.models.list_models()`: models added with `register_model` too)."""
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    cp: CopyPasteSection = field(default_factory=CopyPasteSection)
    run: RunSection = field(default_factory=RunSection)

    def validate(self) -> TrainConfig:
        """Raise ConfigError on the first invalid value; returns self."""
        from p3m.models.registry import list_models

        problems = []
        models = list_models()
        if self.model not in models:
            problems.append(f"model must be one of {', '.join(models)}, got {self.model!r}")
        d, o, v, c, r = self.data, self.optim, self.validation, self.cp, self.run
        if d.protocol not in values(TrainingImages):
            problems.append(f"data.protocol must be {_either(TrainingImages)}, got {d.protocol!r}")
        if not d.crop_sizes or any(size < 32 for size in d.crop_sizes):
            problems.append(f"data.crop_sizes must be sizes >= 32, got {d.crop_sizes}")
        if d.output_size < 32 or d.output_size % 32:
            problems.append(f"data.output_size must be a multiple of 32, got {d.output_size}")
        if len(d.trimap_kernel_range) != 2 or not 1 <= d.trimap_kernel_range[0] <= d.trimap_kernel_range[1]:
            problems.append(f"data.trimap_kernel_range must be [low, high] with 1 <= low <= high, got {d.trimap_kernel_range}")
        for name in ("transition_probability", "flip_probability"):
            if not 0 <= getattr(d, name) <= 1:
                problems.append(f"data.{name} must be in [0, 1]")
        if d.workers < 0:
            problems.append("data.workers must be >= 0")
        if d.limit is not None and d.limit < 1:
            problems.append("data.limit must be >= 1")
        if o.lr <= 0:
            problems.append(f"optim.lr must be > 0, got {o.lr}")
        if o.batch_size < 1:
            problems.append(f"optim.batch_size must be >= 1, got {o.batch_size}")
        if o.epochs < 1:
            problems.append(f"optim.epochs must be >= 1, got {o.epochs}")
        if o.schedule not in values(LrSchedule):
            problems.append(f"optim.schedule must be {_either(LrSchedule)}, got {o.schedule!r}")
        if len(o.betas) != 2:
            problems.append("optim.betas must be two numbers")
        if o.max_steps is not None and o.max_steps < 1:
            problems.append("optim.max_steps must be >= 1")
        if v.every_epochs < 0:
            problems.append("validation.every_epochs must be >= 0")
        unknown_sets = [s for s in v.sets if s not in values(TestSet)]
        if unknown_sets:
            problems.append(f"validation.sets has unknown set(s) {unknown_sets}")
        if v.strategy not in values(TestStrategy):
            problems.append(f"validation.strategy must be {_either(TestStrategy)}, got {v.strategy!r}")
        if c.mode not in values(CPMode):
            problems.append(f"cp.mode must be {_either(CPMode)}, got {c.mode!r}")
        if not 0 <= c.probability <= 1:
            problems.append("cp.probability must be in [0, 1]")
        if c.mode != "none" and not c.sources:
            problems.append(f"cp.mode={c.mode} needs cp.sources (a folder of face images)")
        if r.checkpoint_every < 0 or r.log_every < 1:
            problems.append("run.checkpoint_every must be >= 0 and run.log_every >= 1")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        return self


def _either(enum: type[Any]) -> str:
    """'a, b or c' of an enum's values, for messages."""
    names = values(enum)
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _convert(value: Any, annotation: str, key: str) -> Any:
    """Check/convert a YAML value to the field's annotated type (given as its string)."""
    text = annotation
    optional = "None" in text
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key} cannot be null")
    try:
        if text.startswith("list[int]"):
            if not isinstance(value, (list, tuple)):
                value = [value]
            return [int(v) for v in value]
        if text.startswith("list[float]"):
            return [float(v) for v in value]
        if text.startswith("list[str]"):
            if isinstance(value, str):
                value = [value]
            return [str(v) for v in value]
        if text.startswith("bool"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError(f"not a boolean: {value!r}")
        if text.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if text.startswith("float"):
            return float(value)
        if text.startswith("str"):
            return str(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config key {key}: expected {text}, got {value!r} ({error})") from error
    return value


def _update(section: Any, values: dict[str, Any], prefix: str) -> None:
    # Field types are strings here (postponed annotations): "int", "str | None", "list[int]".
    hints = {f.name: str(f.type) for f in dataclasses.fields(section)}
    names = set(hints)
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full} (known: {', '.join(sorted(names))})")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full} must be a mapping")
            _update(current, value, f"{full}.")
        else:
            setattr(section, key, _convert(value, hints[key], full))


def _parse_override(override: str) -> tuple[list[str], Any]:
    import yaml

    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key=value (e.g. optim.lr=1e-4)")
    key, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: cannot parse value ({error})") from error
    if isinstance(value, str) and raw.strip().lower() in ("none", "null"):
        value = None
    return key.strip().split("."), value


def set_values(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """Set dotted keys to Python values (explicit command-line flags), with type checks."""
    for key, value in values.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        _update(config, nested, "")
    return config


def apply_overrides(config: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply `section.key=value` overrides in order (values parsed as YAML)."""
    for override in overrides:
        path, value = _parse_override(override)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        _update(config, nested, "")
    return config


def load_config(
    path: str | PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    values: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults <- YAML file (if given) <- `values` (dotted key -> value) <- overrides, validated."""
    import yaml

    config = TrainConfig()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read config file ({error.strerror})", path) from error
        try:
            from_file = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"not valid YAML ({str(error).splitlines()[0]})", path) from error
        if not isinstance(from_file, dict):
            raise ConfigError("a training config must be a YAML mapping", path)
        try:
            _update(config, from_file, "")
        except ConfigError as error:
            raise ConfigError(error.problem, path) from error
    set_values(config, values or {})
    apply_overrides(config, overrides)
    return config.validate()


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain dict (YAML/JSON-serialisable) of a config."""
    return dataclasses.asdict(config)


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
    return protocol if protocol in values(TrainingImages) else None
