"""P3M-CP during training: image-level (ICP) and feature-level (FCP) copy-and-paste of real faces.

The trainer (`p3m.training.trainer`) builds one `CopyPasteTrainingHook` from its `cp` config
section (`mode: none|icp|fcp`, `layer`, `probability`, `sources`) through `make_training_hook`
and calls it around every optimiser step (`p3m.training.hooks.TrainingHook`). Every random draw
comes from the generator the trainer passes in (derived from seed, step and rank), so a stopped
and resumed run stays identical.

* ICP: per training image, with probability p, a random source face is pasted into the image's
  facemask area (`ImageCopyPaste`; on the normalised batch, or on a uint8 sample in a dataset).
  When the batch has a foreground (composition loss), the same face goes into it too: inside
  the facemask alpha is 1, so image = foreground there and the composition stays consistent.
* FCP: per mini-batch, with probability p, one source face goes through the encoder up to the
  layer G1 under no_grad (a forward hook captures G1's output and stops the pass), then the
  batch runs forward and G1's output is replaced by copy_paste(target features, source
  features, facemask): the merged features continue through G2 (`FeatureCopyPaste`). The source
  is detached, so no gradient reaches the source branch.

Samples without a facemask (or with an empty one) are skipped and counted (`stats`).

Example (a custom loop)::

    fcp = FeatureCopyPaste(CPSourceSet("cp-sources"), layer=None, probability=0.5)
    outputs = fcp.forward(model, images, facemask, rng=np.random.default_rng(step))
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from p3m.errors import ConfigError, ShapeMismatchError
from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD
from p3m.training.copy_paste.operation import CopyPasteConfig, copy_paste, sample_paste_params
from p3m.training.copy_paste.sources import CPSourceSet
from p3m.vocabulary import CPMode, values

__all__ = [
    "CP_MODES",
    "CopyPasteStats",
    "CopyPasteTrainingHook",
    "FeatureCopyPaste",
    "ImageCopyPaste",
    "make_training_hook",
]

logger = logging.getLogger(__name__)

CP_MODES: tuple[str, ...] = values(CPMode)
RandomGenerator = np.random.Generator | torch.Generator | None


@dataclass
class CopyPasteStats:
    """Counts of one process: draws, pastes done, and samples skipped for lack of a facemask."""

    draws: int = 0
    applied: int = 0
    skipped_no_facemask: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "cp_draws": self.draws,
            "cp_applied": self.applied,
            "cp_skipped_no_facemask": self.skipped_no_facemask,
        }


def _check_probability(probability: float) -> float:
    if not 0.0 <= probability <= 1.0:
        raise ConfigError(f"cp probability must be in [0, 1], got {probability}")
    return float(probability)


def _uniform(rng: RandomGenerator) -> float:
    if isinstance(rng, np.random.Generator):
        return float(rng.random())
    return float(torch.rand((), generator=rng, dtype=torch.float64))


def _scale_to_area(image: np.ndarray, mask: np.ndarray, target_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize a source face so its mask covers about `target_area` pixels (area filter when shrinking).

    copy_paste matches the areas exactly by resampling; doing the bulk of a large reduction here
    with an area filter avoids aliasing (bilinear sampling alone would skip pixels).
    """
    import cv2

    area = float(mask.sum())
    if area <= 0 or target_area <= 0:
        return image, mask
    factor = float(np.sqrt(target_area / area))
    if 0.8 <= factor <= 1.25:
        return image, mask
    height, width = mask.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized_image = cv2.resize(image, size, interpolation=interpolation)
    resized_mask = cv2.resize(mask.astype(np.float32), size, interpolation=interpolation) >= 0.5
    return resized_image, resized_mask


def _fit_inside(image: np.ndarray, mask: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Shrink (keeping the aspect ratio) a face crop larger than height x width."""
    import cv2

    factor = min(height / image.shape[0], width / image.shape[1], 1.0)
    if factor >= 1.0:
        return image, mask
    size = (max(1, int(image.shape[1] * factor)), max(1, int(image.shape[0] * factor)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    resized_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return resized, resized_mask


def _normalised(image: np.ndarray, like: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """RGB uint8 H x W x 3 -> 1 x 3 x H x W on `like`'s device/dtype, /255 then mean/std."""
    tensor = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None]
    tensor = tensor.to(device=like.device, dtype=like.dtype) / 255
    mean_t = torch.tensor(mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
    return (tensor - mean_t) / std_t


def _facemask_batch(facemask: Tensor | None, count: int) -> Tensor | None:
    if facemask is None:
        return None
    return facemask if facemask.ndim == 4 else facemask[:, None]


# --------------------------------------------------------------------------- ICP


class ImageCopyPaste:
    """ICP: paste a random source face into the facemask area of each image with probability p.

    `apply_to_batch(images, facemask, rng)` works on a normalised N x 3 x H x W batch (what the
    trainer holds); `__call__(arrays, rng)` on one uint8 sample dict ('image', 'facemask') for
    use inside a dataset, before normalisation.
    """

    def __init__(
        self,
        sources: CPSourceSet,
        probability: float = 0.5,
        config: CopyPasteConfig | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        self.sources = sources
        self.probability = _check_probability(probability)
        self.config = config or CopyPasteConfig()
        self.mean, self.std = mean, std
        self.stats = CopyPasteStats()

    def _draw_source(self, target_mask_area: float, rng: RandomGenerator) -> tuple[np.ndarray, np.ndarray]:
        face, face_mask = self.sources.sample(rng)
        return _scale_to_area(face, face_mask, target_mask_area)

    def __call__(self, arrays: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One sample: 'image' RGB uint8 H x W x 3, 'facemask' uint8 0..255 or bool H x W (optional)."""
        self.stats.draws += 1
        if _uniform(rng) >= self.probability:
            return arrays
        facemask = arrays.get("facemask")
        if facemask is not None:
            facemask = np.asarray(facemask)
            facemask = facemask >= 128 if facemask.dtype == np.uint8 else facemask >= 0.5
        if facemask is None or not facemask.any():
            self.stats.skipped_no_facemask += 1
            return arrays
        face, face_mask = self._draw_source(float(facemask.sum()), rng)
        params = sample_paste_params(1, self.config, rng)
        out = dict(arrays)
        for key in ("image", "foreground"):
            if key in arrays:
                out[key] = copy_paste(arrays[key], face, facemask, face_mask, config=self.config, params=params).output
        self.stats.applied += 1
        return out

    def apply_to_batch(
        self, images: Tensor, facemask: Tensor | None, rng: RandomGenerator, foreground: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(images, foreground) with faces pasted; normalised N x 3 x H x W, facemask N x 1 x H x W in {0, 1}."""
        count = int(images.shape[0])
        facemask = _facemask_batch(facemask, count)
        new_images, new_foreground = images, foreground
        for index in range(count):
            self.stats.draws += 1
            if _uniform(rng) >= self.probability:
                continue
            target_mask = None if facemask is None else facemask[index : index + 1] >= 0.5
            if target_mask is None or not bool(target_mask.any()):
                self.stats.skipped_no_facemask += 1
                continue
            face, face_mask = self._draw_source(float(target_mask.sum()), rng)
            source = _normalised(face, images, self.mean, self.std)
            source_mask = torch.from_numpy(face_mask)
            params = sample_paste_params(1, self.config, rng)
            if new_images is images:
                new_images = images.clone()
            new_images[index : index + 1] = copy_paste(
                images[index : index + 1], source, target_mask, source_mask, config=self.config, params=params
            ).output
            if foreground is not None:
                if new_foreground is foreground:
                    new_foreground = foreground.clone()
                new_foreground[index : index + 1] = copy_paste(
                    foreground[index : index + 1], source, target_mask, source_mask,
                    config=self.config, params=params,
                ).output
            self.stats.applied += 1
        return new_images, new_foreground


# --------------------------------------------------------------------------- FCP


class _StopForward(Exception):
    """Raised by the capture hook: the source pass has what it needs at G1."""


def _batch_norms_in_training(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def _first_tensor(output: Any, layer: str) -> Tensor:
    tensor = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(tensor, Tensor) or tensor.ndim != 4:
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise ShapeMismatchError(f"FCP needs an N x C x h x w feature map after layer {layer!r}, got {shape}")
    return tensor


def _replace_first_tensor(output: Any, tensor: Tensor) -> Any:
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    if isinstance(output, list):
        return [tensor, *output[1:]]
    return tensor


@dataclass
class _Armed:
    """What the paste hook needs for the coming forward pass."""

    source_features: Tensor
    source_mask: Tensor
    facemask: Tensor
    rng: RandomGenerator
    fired: bool = False


class FeatureCopyPaste:
    """FCP: paste one source face's G1 features into the batch's G1 features (probability p per batch).

    `layer` is a name from `model.fcp_layers` (None: the shallowest). Images are normalised
    N x 3 x H x W, `facemask` N x 1 x H x W in {0, 1}, all zero for samples that have none. The
    source pass runs the bare model (not a DDP wrapper) with batch norm on its running
    statistics, so only the training images update them.
    """

    def __init__(
        self,
        sources: CPSourceSet,
        layer: str | None = None,
        probability: float = 0.5,
        config: CopyPasteConfig | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        self.sources = sources
        self.layer = layer
        self.probability = _check_probability(probability)
        self.config = config or CopyPasteConfig()
        self.mean, self.std = mean, std
        self.stats = CopyPasteStats()
        self._armed: _Armed | None = None
        self._handle: Any = None

    def layer_name(self, model: nn.Module) -> str:
        """G1 for `model`: `self.layer` checked against `model.fcp_layers`, or the shallowest one."""
        layers = tuple(getattr(model, "fcp_layers", ()))
        if self.layer is None:
            if not layers:
                raise ConfigError(f"{type(model).__name__} declares no fcp_layers; set the cp layer explicitly")
            return layers[0]
        if layers and self.layer not in layers:
            raise ConfigError(f"cp layer {self.layer!r} is not one of this model's fcp_layers: {', '.join(layers)}")
        return self.layer

    def draw(self, rng: RandomGenerator = None) -> bool:
        """Whether FCP applies to the next mini-batch (probability p)."""
        self.stats.draws += 1
        return _uniform(rng) < self.probability

    def source_batch(self, images: Tensor, facemask: Tensor, rng: RandomGenerator = None) -> tuple[Tensor, Tensor]:
        """One random source face as a normalised 1 x 3 x H x W image (the size of `images`) and its
        1 x 1 x H x W mask: scaled so the face has about the mean target facemask area (so G1 sees
        it at the scale it will be pasted at), centred, the rest the mean colour (0 once normalised)."""
        height, width = int(images.shape[-2]), int(images.shape[-1])
        areas = facemask.flatten(1).ge(0.5).sum(dim=1).double()
        target_area = float(areas[areas > 0].mean()) if bool((areas > 0).any()) else 0.0
        face, face_mask = self.sources.sample(rng)
        face, face_mask = _scale_to_area(face, face_mask, target_area)
        face, face_mask = _fit_inside(face, face_mask, height, width)
        canvas = torch.zeros(1, 3, height, width, dtype=images.dtype, device=images.device)
        mask = torch.zeros(1, 1, height, width, dtype=torch.bool, device=images.device)
        top, left = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
        rows, cols = slice(top, top + face.shape[0]), slice(left, left + face.shape[1])
        canvas[:, :, rows, cols] = _normalised(face, images, self.mean, self.std)
        mask[0, 0, rows, cols] = torch.from_numpy(face_mask).to(images.device)
        return canvas, mask

    def source_features(self, model: nn.Module, layer: str, source_image: Tensor) -> Tensor:
        """G1(source) under no_grad, detached: the pass stops at `layer`; batch norm in eval mode."""
        module = model.get_submodule(layer)
        captured: list[Tensor] = []

        def capture(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured.append(_first_tensor(output, layer).detach())
            raise _StopForward

        # Batch norm uses its running statistics here: the batch statistics of one mostly padded
        # source image mean little, the running ones follow the training images, and the
        # training images alone update them (this also keeps SyncBatchNorm ranks in step).
        batch_norms = _batch_norms_in_training(model)
        for batch_norm in batch_norms:
            batch_norm.eval()
        handle = module.register_forward_hook(capture)
        try:
            with torch.no_grad():
                model(source_image)
        except _StopForward:
            pass
        finally:
            handle.remove()
            for batch_norm in batch_norms:
                batch_norm.train()
        if not captured:
            raise ConfigError(f"layer {layer!r} did not run during the forward pass")
        return captured[0]

    def _paste(self, _module: nn.Module, _inputs: Any, output: Any) -> Any:
        armed = self._armed
        if armed is None or armed.fired:
            return None  # not armed, or a module called twice: paste at its first call only
        armed.fired = True
        target = _first_tensor(output, self.layer or "")
        merged = copy_paste(
            target,
            armed.source_features.detach().to(target.dtype),
            armed.facemask,
            armed.source_mask,
            config=self.config,
            generator=armed.rng,
        ).output
        return _replace_first_tensor(output, merged)

    def attach(self, model: nn.Module) -> None:
        """Register the (idle) paste hook on G1 of the bare `model`; `arm` activates it per batch."""
        self.detach()
        self.layer = self.layer_name(model)
        # prepend: hooks registered by others see the merged features, as G2 does.
        self._handle = model.get_submodule(self.layer).register_forward_hook(self._paste, prepend=True)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._armed = None

    def arm(self, model: nn.Module, images: Tensor, facemask: Tensor | None, rng: RandomGenerator) -> bool:
        """Draw for this batch; when FCP applies, compute the source features and arm the paste hook."""
        self._armed = None
        if not self.draw(rng):
            return False
        count = int(images.shape[0])
        facemask = _facemask_batch(facemask, count)
        missing = count if facemask is None else int((facemask.flatten(1).amax(dim=1) < 0.5).sum())
        self.stats.skipped_no_facemask += missing
        if missing == count:
            return False
        layer = self.layer_name(model)
        source_image, source_mask = self.source_batch(images, facemask, rng)
        features = self.source_features(model, layer, source_image)
        self._armed = _Armed(features, source_mask, facemask, rng)
        self.stats.applied += 1
        return True

    def disarm(self) -> None:
        self._armed = None

    def forward_with_source(
        self,
        model: nn.Module,
        images: Tensor,
        facemask: Tensor,
        source_features: Tensor,
        source_mask: Tensor,
        rng: RandomGenerator = None,
    ) -> Any:
        """model(images) with G1's output replaced by CP(target features, source features, masks)."""
        attached = self._handle is not None
        if not attached:
            self.attach(getattr(model, "module", model))
        self._armed = _Armed(source_features, source_mask, _facemask_batch(facemask, int(images.shape[0])), rng)
        try:
            return model(images)
        finally:
            self._armed = None
            if not attached:
                self.detach()

    def forward(self, model: nn.Module, images: Tensor, facemask: Tensor | None, rng: RandomGenerator = None) -> Any:
        """`model(images)` with FCP applied with probability p (custom training loops)."""
        bare = getattr(model, "module", model)  # DDP: the source pass bypasses the wrapper
        attached = self._handle is not None
        if not attached:
            self.attach(bare)
        try:
            self.arm(bare, images, facemask, rng)
            return model(images)
        finally:
            self._armed = None
            if not attached:
                self.detach()


# --------------------------------------------------------------------------- the trainer's hook


class CopyPasteTrainingHook:
    """The trainer's P3M-CP hook (`p3m.training.hooks.TrainingHook`): ICP or FCP per the config."""

    def __init__(
        self,
        mode: str,
        sources: CPSourceSet | str | os.PathLike[str] | None,
        probability: float = 0.5,
        layer: str | None = None,
        config: CopyPasteConfig | None = None,
    ) -> None:
        if mode not in CP_MODES:
            raise ConfigError(f"cp mode must be one of {', '.join(CP_MODES)}, got {mode!r}")
        self.mode = mode
        self.image_cp: ImageCopyPaste | None = None
        self.feature_cp: FeatureCopyPaste | None = None
        self.model: nn.Module | None = None
        """The bare model given to `setup`."""
        self._warned_no_facemask = False
        if mode == "none":
            return
        if sources is None or str(sources) == "":
            raise ConfigError(f"cp mode {mode} needs cp sources (a folder made by `p3m cp-sources build`)")
        source_set = sources if isinstance(sources, CPSourceSet) else CPSourceSet(sources)
        if mode == "icp":
            if layer:
                logger.warning("the cp layer %r is ignored with cp mode icp", layer)
            self.image_cp = ImageCopyPaste(source_set, probability, config)
        else:
            self.feature_cp = FeatureCopyPaste(source_set, layer, probability, config)

    @property
    def stats(self) -> CopyPasteStats:
        if self.image_cp is not None:
            return self.image_cp.stats
        if self.feature_cp is not None:
            return self.feature_cp.stats
        return CopyPasteStats()

    def setup(self, model: nn.Module, config: Any = None) -> None:
        """Check the layer and attach the FCP hook to the bare model."""
        self.model = getattr(model, "module", model)
        if self.feature_cp is not None:
            self.feature_cp.attach(self.model)
            logger.info("P3M-CP: FCP after layer %s, probability %.2f", self.feature_cp.layer, self.feature_cp.probability)
        elif self.image_cp is not None:
            logger.info("P3M-CP: ICP, probability %.2f", self.image_cp.probability)

    def before_forward(self, batch: dict[str, Tensor], rng: np.random.Generator) -> dict[str, Tensor]:
        facemask = batch.get("facemask")
        if facemask is None and self.mode != "none" and not self._warned_no_facemask:
            self._warned_no_facemask = True
            logger.warning(
                "P3M-CP (%s): the training batches carry no facemask (no train/facemask folder?); "
                "nothing will be pasted, every draw is counted as skipped", self.mode,
            )
        if self.image_cp is not None:
            images, foreground = self.image_cp.apply_to_batch(batch["image"], facemask, rng, batch.get("foreground"))
            batch = {**batch, "image": images}
            if foreground is not None:
                batch["foreground"] = foreground
        elif self.feature_cp is not None:
            if self.model is None:
                raise ConfigError("CopyPasteTrainingHook.setup(model) was not called before training")
            self.feature_cp.arm(self.model, batch["image"], facemask, rng)
        return batch

    def after_step(self) -> None:
        if self.feature_cp is not None:
            self.feature_cp.disarm()

    def close(self) -> None:
        if self.feature_cp is not None:
            self.feature_cp.detach()
        if self.mode != "none":
            stats = self.stats
            logger.info(
                "P3M-CP (%s): applied %d of %d draws; %d sample(s) without a facemask skipped",
                self.mode, stats.applied, stats.draws, stats.skipped_no_facemask,
            )


def make_training_hook(cp_config: Any, model: nn.Module | None = None) -> CopyPasteTrainingHook:
    """The hook for a training config's `cp` section (`mode`, `layer`, `probability`, `sources`)."""
    hook = CopyPasteTrainingHook(
        cp_config.mode, cp_config.sources, cp_config.probability, getattr(cp_config, "layer", None)
    )
    if model is not None and hook.feature_cp is not None:
        hook.feature_cp.layer = hook.feature_cp.layer_name(getattr(model, "module", model))
    return hook
