"""The P3M training losses, numerically equal to the official `core/evaluate.py` + `train.py`.

Every function reproduces the official arithmetic, quirks included (see
tests/data/reference/losses/README.md): the cross-entropy class map keeps trimap values 1 and 2,
the unknown-region masks use `trimap == 128` exactly, epsilon 1e-12 sits inside every square root,
the Laplacian kernel is the *sum* of two 1-D profiles, the composition loss is three times a
per-element mean in ImageNet-normalised colour, and the total counts the fusion alpha term 3 times.

Conventions (as in training): `alpha` is the ground truth on the 0..255 scale (N x 1 x H x W),
`trimap` is 0..255 (N x 1 x H x W), predictions are in [0, 1], logits are N x 3 x H x W.

    >>> parts = p3m_loss(output, alpha=mask, trimap=trimap, image=ori, foreground=fg, background=bg)
    >>> parts.total.backward()
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

EPSILON = 1e-12
LAPLACIAN_LEVELS = 5
UNKNOWN_VALUE = 128

__all__ = [
    "LossParts",
    "alpha_loss",
    "alpha_loss_whole",
    "composition_loss_whole",
    "cross_entropy_loss",
    "laplacian_kernel",
    "laplacian_loss",
    "laplacian_loss_whole",
    "laplacian_pyramid",
    "p3m_loss",
    "trimap_to_classes",
]


def trimap_to_classes(trimap: torch.Tensor) -> torch.Tensor:
    """Class map of the official cross-entropy: 0 -> 0, 255 -> 2, values > 2 -> 1, then truncate.

    Values 1 and 2 keep their own value (1 = unknown, 2 = foreground): an official quirk that only
    shows on interpolated trimaps. Returns an int64 tensor N x H x W.
    """
    classes = trimap.detach().clone()
    classes[classes == 255] = 2
    classes[classes > 2] = 1
    return classes.long()[:, 0]


def cross_entropy_loss(logits: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of 3-class logits against the trimap classes (`trimap_to_classes`).

    Note the argument order differs from the official `get_crossentropy_loss(gt, pre)`.
    """
    return F.cross_entropy(logits, trimap_to_classes(trimap))


def _unknown_weight(trimap: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # Exact equality: interpolated unknown-band values (127, 129, ...) are excluded, as officially.
    return (trimap == UNKNOWN_VALUE).to(like.dtype)


def alpha_loss(prediction: torch.Tensor, alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """Charbonnier alpha loss in the unknown region: sum sqrt((w(p - a))^2 + eps) / (sum w + 1)."""
    weight = _unknown_weight(trimap, prediction)
    difference = (prediction - alpha / 255.0) * weight
    return torch.sqrt(difference**2 + EPSILON).sum() / (weight.sum() + 1.0)


def alpha_loss_whole(prediction: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Charbonnier alpha loss over the whole image: mean sqrt((p - a)^2 + eps)."""
    difference = prediction - alpha / 255.0
    count = alpha.shape[0] * alpha.shape[2] * alpha.shape[3]
    return torch.sqrt(difference**2 + EPSILON).sum() / float(count)


def laplacian_kernel(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """The official 5x5 float32 kernel: normalised (g(i) + g(j)) with g(t) = exp(-(t-c)^2/2s^2)^2.

    Additive, not separable: a plus-shaped blur (centre 0.112842, corner 0.002067), summing to 1.
    """
    coordinates = np.arange(size, dtype=np.float32)
    centred = (coordinates - np.float32(size // 2)) ** 2
    profile = np.exp(centred / np.float32(-2.0 * sigma**2)) ** 2
    kernel = (profile[None, :] + profile[:, None]).astype(np.float32)
    return (kernel / np.sum(kernel)).astype(np.float32)


def _kernel_tensor(channels: int, like: torch.Tensor) -> torch.Tensor:
    kernel = torch.from_numpy(laplacian_kernel())
    return kernel.expand(channels, 1, 5, 5).to(device=like.device, dtype=like.dtype)


def laplacian_pyramid(image: torch.Tensor, levels: int = LAPLACIAN_LEVELS) -> list[torch.Tensor]:
    """Band-pass levels D_0..D_{levels-1} plus the low-pass remainder (replicate padding, 2x2 pool)."""
    kernel = _kernel_tensor(image.shape[1], image)
    pyramid = []
    current = image
    for _ in range(levels):
        padded = F.pad(current, (2, 2, 2, 2), mode="replicate")
        filtered = F.conv2d(padded, kernel, groups=image.shape[1])
        pyramid.append(current - filtered)
        current = F.avg_pool2d(filtered, 2)
    pyramid.append(current)
    return pyramid


def _pyramid_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = None
    for target_level, prediction_level in zip(
        laplacian_pyramid(target), laplacian_pyramid(prediction), strict=True
    ):
        level_loss = F.l1_loss(target_level, prediction_level)
        loss = level_loss if loss is None else loss + level_loss
    assert loss is not None
    return loss


def laplacian_loss(prediction: torch.Tensor, alpha: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
    """Laplacian-pyramid L1 loss of w*p against w*a (masked BEFORE the pyramid), w = [trimap == 128]."""
    weight = _unknown_weight(trimap, prediction)
    return _pyramid_l1(prediction * weight, alpha / 255.0 * weight)


def laplacian_loss_whole(prediction: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Laplacian-pyramid L1 loss over the whole image: sum over 6 unweighted levels of mean |.|."""
    return _pyramid_l1(prediction, alpha / 255.0)


def composition_loss_whole(
    prediction: torch.Tensor,
    image: torch.Tensor,
    foreground: torch.Tensor,
    background: torch.Tensor,
) -> torch.Tensor:
    """Composition loss in ImageNet-normalised colour, 3x a per-element mean (official denominator).

    The composite p*fg + (1-p)*bg is compared with the real image; the denominator counts one
    channel (N*H*W) while the numerator sums three, as in the official code.
    """
    alpha3 = torch.cat((prediction, prediction, prediction), 1)
    composite = foreground * alpha3 + background * (1.0 - alpha3)
    count = prediction.shape[0] * prediction.shape[2] * prediction.shape[3]
    return torch.sqrt((composite - image) ** 2 + EPSILON).sum() / float(count)


class LossParts(NamedTuple):
    """The total training loss and its four unweighted parts (the official log line)."""

    total: torch.Tensor
    global_: torch.Tensor
    local: torch.Tensor
    fusion_alpha: torch.Tensor
    fusion_composition: torch.Tensor | None

    def as_floats(self) -> dict[str, float]:
        """Python floats for logging (`None` when the composition term was left out)."""
        return {
            "loss": float(self.total.detach()),
            "global": float(self.global_.detach()),
            "local": float(self.local.detach()),
            "fusion_alpha": float(self.fusion_alpha.detach()),
            "fusion_comp": None
            if self.fusion_composition is None
            else float(self.fusion_composition.detach()),
        }


_warned_no_composition = False


def p3m_loss(
    output: tuple[torch.Tensor, ...],
    *,
    alpha: torch.Tensor,
    trimap: torch.Tensor,
    image: torch.Tensor | None = None,
    foreground: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> LossParts:
    """The official `train.py` total, evaluated in its float32 order.

    `output` is a P3M-Net output in the official order (global_logits, local, fusion, side2,
    side1, side0). loss = global/6 + local*2 + fusion_alpha*2 + fusion_alpha + composition,
    with global = CE(side2) + CE(side1) + CE(side0) + 3 CE(global). Without foreground/background
    the composition term is left out (logged once).

    Side outputs that are None (models without dBFI: the Table 7 ablations `basic-*`, `*-tfi`,
    `*-tfi-sbfi`) drop out of `global`; every other weight stays, so the ablations are trained
    with the same objective minus the deep supervision that only dBFI provides.
    """
    global_logits, local, fusion, side2, side1, side0 = output[:6]
    sides = [cross_entropy_loss(side, trimap) for side in (side2, side1, side0) if side is not None]
    loss_global = 3 * cross_entropy_loss(global_logits, trimap)
    if sides:  # summed in the official order: ((side2 + side1) + side0) + 3 global
        loss_sides = sides[0]
        for term in sides[1:]:
            loss_sides = loss_sides + term
        loss_global = loss_sides + loss_global
    loss_local = alpha_loss(local, alpha, trimap) + laplacian_loss(local, alpha, trimap)
    loss_fusion_alpha = alpha_loss_whole(fusion, alpha) + laplacian_loss_whole(fusion, alpha)
    total = loss_global / 6 + loss_local * 2 + loss_fusion_alpha * 2 + loss_fusion_alpha
    if foreground is None or background is None or image is None:
        global _warned_no_composition
        if not _warned_no_composition:
            logger.warning(
                "no foreground/background in the batch: the composition loss is left out of the total"
            )
            _warned_no_composition = True
        return LossParts(total, loss_global, loss_local, loss_fusion_alpha, None)
    loss_composition = composition_loss_whole(fusion, image, foreground, background)
    total = total + loss_composition
    return LossParts(total, loss_global, loss_local, loss_fusion_alpha, loss_composition)
