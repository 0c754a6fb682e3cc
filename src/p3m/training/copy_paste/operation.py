"""P3M-CP: copy a public face and paste it over the obfuscated face of a training sample.

Section 5 of "Rethinking Portrait Matting with Privacy Preserving" (Ma, Li et al., Fig. 9):
a model trained only on blurred faces should still matte real faces, so real faces from a
public set are pasted onto the obfuscated area, either on the image (ICP) or on the features
of the first encoder layers (FCP). One function, `copy_paste`, serves both; it has no weights.

1. Copy and augment: the source face is cut by its mask, resized and rotated at random.
2. Align and merge: the centre (centroid) of the source mask is put on the centre of the
   target's facemask, and only the overlap changes: a pixel (or feature cell) is replaced iff
   it lies inside BOTH the transformed source mask and the target facemask.

Resizing: the source is first scaled so that its mask has the same area as the target
facemask (``match_size=True``; the source set's crop size then does not matter), then by a
random factor in ``scale_range``; the rotation is uniform in +-``max_rotation_degrees``
about the centre. Masks of another size than the data are resized by area averaging and a
0.5 threshold (a majority vote per cell, so a facemask shrunk to a stride-4 feature map keeps
the cells that are mostly face). Source values are sampled bilinearly, the source mask by
nearest neighbour, so the pasted region is an exact set of cells.

Example::

    result = copy_paste(image, face, facemask, face_mask, generator=np.random.default_rng(0))
    augmented, pasted = result.output, result.region
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from p3m.errors import ShapeMismatchError

Generator = torch.Generator | np.random.Generator | None
ArrayLike = torch.Tensor | np.ndarray

__all__ = [
    "CopyPasteConfig",
    "CopyPasteResult",
    "PasteParams",
    "copy_paste",
    "draw_uniform",
    "mask_centroids",
    "resize_mask",
    "sample_paste_params",
]


@dataclass(frozen=True)
class CopyPasteConfig:
    """How the source face is augmented before it is pasted."""

    scale_range: tuple[float, float] = (0.9, 1.1)
    """Random factor applied after the size match (1.0 = same mask area as the target)."""
    max_rotation_degrees: float = 15.0
    """Rotation about the face centre, uniform in [-max, +max] degrees."""
    match_size: bool = True
    """Scale the source so its mask area equals the target facemask area before the random factor."""

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if self.max_rotation_degrees < 0:
            raise ValueError("max_rotation_degrees must be >= 0")


class PasteParams(NamedTuple):
    """Per-sample augmentation: a scale factor and a rotation (degrees), each of shape (N,)."""

    scale_factors: torch.Tensor
    angles_degrees: torch.Tensor


class CopyPasteResult(NamedTuple):
    """The merged data (same type, shape and dtype as the target) and the cells that were pasted."""

    output: ArrayLike
    region: ArrayLike
    """Bool, N x 1 x H x W for tensors, H x W for a numpy image."""


def draw_uniform(count: int, generator: Generator = None) -> torch.Tensor:
    """`count` uniform draws in [0, 1) as float64, from a torch or numpy generator (or torch's global one)."""
    if isinstance(generator, np.random.Generator):
        return torch.from_numpy(generator.random(count))
    return torch.rand(count, generator=generator, dtype=torch.float64)


def sample_paste_params(
    count: int, config: CopyPasteConfig | None = None, generator: Generator = None
) -> PasteParams:
    """Draw the random resize factor and rotation angle of `count` pastes."""
    config = config or CopyPasteConfig()
    low, high = config.scale_range
    scale = low + (high - low) * draw_uniform(count, generator)
    angle = config.max_rotation_degrees * (2.0 * draw_uniform(count, generator) - 1.0)
    return PasteParams(scale.float(), angle.float())


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A mask (N x 1 x h x w, bool or float in [0, 1]) as bool at `size`: area average then >= 0.5."""
    mask = mask.float() if mask.dtype == torch.bool else mask.float().clamp(0, 1)
    if tuple(mask.shape[-2:]) != tuple(size):
        mask = F.interpolate(mask, size=size, mode="area")
    return mask >= 0.5


def mask_centroids(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroid (x, y) in pixel units (N x 2, float64) and area (N,) of each bool mask N x 1 x H x W."""
    weights = mask[:, 0].to(torch.float64)
    height, width = weights.shape[-2:]
    area = weights.sum(dim=(-2, -1))
    ys = torch.arange(height, dtype=torch.float64, device=mask.device)
    xs = torch.arange(width, dtype=torch.float64, device=mask.device)
    safe_area = area.clamp(min=1.0)
    centre_x = (weights.sum(dim=-2) * xs).sum(dim=-1) / safe_area
    centre_y = (weights.sum(dim=-1) * ys).sum(dim=-1) / safe_area
    return torch.stack([centre_x, centre_y], dim=-1), area


def _as_mask_batch(mask: ArrayLike, batch: int, name: str) -> torch.Tensor:
    """Any of H x W, N x H x W, N x 1 x H x W (numpy or torch) as an N x 1 x H x W tensor."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.require(mask, requirements=["C", "W"]))
    if mask.dtype == torch.uint8:
        mask = mask > 127
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ShapeMismatchError(
            f"{name} must be H x W, N x H x W or N x 1 x H x W, got {tuple(mask.shape)}"
        )
    if mask.shape[0] not in (1, batch):
        raise ShapeMismatchError(f"{name} has batch size {mask.shape[0]}, expected 1 or {batch}")
    return mask.expand(batch, -1, -1, -1)


def _as_data_batch(data: ArrayLike, name: str) -> tuple[torch.Tensor, bool]:
    """An image H x W x C (numpy) or a batch N x C x H x W (tensor) as N x C x H x W; flag = came as numpy."""
    if isinstance(data, np.ndarray):
        if data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3:
            raise ShapeMismatchError(f"{name} as a numpy array must be H x W x C, got {data.shape}")
        # np.require copies read-only arrays (e.g. decoded images): torch warns on those.
        return torch.from_numpy(np.require(data, requirements=["C", "W"])).permute(2, 0, 1)[
            None
        ], True
    if data.ndim == 3:
        data = data[None]
    if data.ndim != 4:
        raise ShapeMismatchError(f"{name} must be N x C x H x W, got {tuple(data.shape)}")
    return data, False


def _source_sampling_grid(
    target_size: tuple[int, int],
    source_size: tuple[int, int],
    target_centre: torch.Tensor,
    source_centre: torch.Tensor,
    scale: torch.Tensor,
    angle_degrees: torch.Tensor,
) -> torch.Tensor:
    """For every target cell, where to read the source (grid_sample grid, align_corners=True), N x H x W x 2.

    The source is scaled by `scale` and rotated by `angle_degrees` about its centre, which lands
    on the target centre: source = c_s + R(-angle) (target - c_t) / scale.
    """
    height, width = target_size
    source_height, source_width = source_size
    device = target_centre.device
    ys = torch.arange(height, dtype=torch.float64, device=device).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float64, device=device).view(1, 1, width)
    dx = xs - target_centre[:, 0].view(-1, 1, 1)
    dy = ys - target_centre[:, 1].view(-1, 1, 1)
    theta = torch.deg2rad(angle_degrees.to(torch.float64)).view(-1, 1, 1)
    inverse_scale = 1.0 / scale.to(torch.float64).view(-1, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    source_x = source_centre[:, 0].view(-1, 1, 1) + inverse_scale * (cos * dx + sin * dy)
    source_y = source_centre[:, 1].view(-1, 1, 1) + inverse_scale * (-sin * dx + cos * dy)
    grid_x = 2.0 * source_x / max(source_width - 1, 1) - 1.0
    grid_y = 2.0 * source_y / max(source_height - 1, 1) - 1.0
    return torch.stack([grid_x, grid_y], dim=-1)


def copy_paste(
    target: ArrayLike,
    source: ArrayLike,
    target_mask: ArrayLike,
    source_mask: ArrayLike,
    *,
    config: CopyPasteConfig | None = None,
    params: PasteParams | None = None,
    generator: Generator = None,
) -> CopyPasteResult:
    """Paste the (augmented) source face onto the target's facemask area, centre on centre.

    `target`: an image H x W x C (numpy, any dtype; uint8 stays uint8) or images/features
    N x C x H x W (tensor). `source`: same layout, any spatial size, batch 1 (shared by all
    targets, as in FCP) or N. Masks: H x W, N x H x W or N x 1 x H x W, bool / float in [0, 1] /
    uint8 in {0, 255}, any size (resized to the data's size, see the module docstring).
    `params` fixes the augmentation; otherwise it is drawn from `generator` (torch or numpy).
    Gradients flow to `target` outside the pasted region and to `source` inside it; detach the
    source to keep it out of the graph (FCP does).
    """
    target_batch, target_is_numpy = _as_data_batch(target, "target")
    source_batch, _ = _as_data_batch(source, "source")
    count, channels, height, width = target_batch.shape
    if source_batch.shape[1] != channels:
        raise ShapeMismatchError(
            f"source has {source_batch.shape[1]} channels, target has {channels}"
        )
    if source_batch.shape[0] not in (1, count):
        raise ShapeMismatchError(
            f"source batch size {source_batch.shape[0]}, expected 1 or {count}"
        )
    source_size = (int(source_batch.shape[-2]), int(source_batch.shape[-1]))
    device = target_batch.device
    facemask = resize_mask(
        _as_mask_batch(target_mask, count, "target_mask").to(device), (height, width)
    )
    face = resize_mask(_as_mask_batch(source_mask, count, "source_mask").to(device), source_size)

    if params is None:
        params = sample_paste_params(count, config, generator)
    config = config or CopyPasteConfig()

    # Only the box around the target facemasks can change: sample and merge there alone.
    rows = torch.nonzero(facemask.any(dim=0).any(dim=-1).flatten())
    cols = torch.nonzero(facemask.any(dim=0).any(dim=-2).flatten())
    if rows.numel() == 0:
        region = torch.zeros_like(facemask)
        merged = target_batch.clone()  # never hand back a view of the caller's array
    else:
        top, bottom = int(rows.min()), int(rows.max()) + 1
        left, right = int(cols.min()), int(cols.max()) + 1
        window = (slice(None), slice(None), slice(top, bottom), slice(left, right))
        window_region, window_merged = _paste_window(
            target_batch[window], source_batch, facemask[window], face, params, config
        )
        region = torch.zeros_like(facemask)
        region[window] = window_region
        merged = target_batch.clone()
        merged[window] = window_merged

    if target_is_numpy:
        output = merged[0].permute(1, 2, 0).numpy()
        if isinstance(target, np.ndarray) and target.ndim == 2:
            output = output[..., 0]
        return CopyPasteResult(np.ascontiguousarray(output), region[0, 0].numpy())
    if isinstance(target, torch.Tensor) and target.ndim == 3:
        return CopyPasteResult(merged[0], region[0])
    return CopyPasteResult(merged, region)


def _paste_window(
    target: torch.Tensor,
    source: torch.Tensor,
    facemask: torch.Tensor,
    face: torch.Tensor,
    params: PasteParams,
    config: CopyPasteConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """copy_paste on data already cropped to the facemasks' box: (region, merged) of that box."""
    count, _, height, width = target.shape
    device = target.device
    source_size = (int(source.shape[-2]), int(source.shape[-1]))
    target_centre, target_area = mask_centroids(facemask)
    source_centre, source_area = mask_centroids(face)
    scale = params.scale_factors.to(device=device, dtype=torch.float64).expand(count)
    if config.match_size:
        scale = scale * torch.sqrt(target_area / source_area.clamp(min=1.0))
    # An empty mask on either side means nothing to paste; keep the grid finite anyway.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    grid = _source_sampling_grid(
        (height, width),
        source_size,
        target_centre,
        source_centre,
        scale,
        params.angles_degrees.to(device).expand(count),
    )
    # Half-precision features are resampled in float32: a coarse grid would misplace cells.
    compute_dtype = torch.float64 if source.dtype == torch.float64 else torch.float32
    grid = grid.to(compute_dtype)
    expanded_source = source.to(device=device, dtype=compute_dtype).expand(count, -1, -1, -1)
    warped = F.grid_sample(
        expanded_source, grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    warped_face = (
        F.grid_sample(
            face.to(compute_dtype), grid, mode="nearest", padding_mode="zeros", align_corners=True
        )
        > 0.5
    )
    nonempty = ((target_area > 0) & (source_area > 0)).view(-1, 1, 1, 1)
    region = facemask & warped_face & nonempty
    if not target.is_floating_point():
        info = torch.iinfo(target.dtype)
        warped = warped.round().clamp(info.min, info.max)
    return region, torch.where(region, warped.to(target.dtype), target)
