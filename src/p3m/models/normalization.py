"""The input normalisation every P3M-Net variant expects: x / 255, then ImageNet mean and std.

The one definition in p3m (RGB order, as torchvision's `Normalize`); training data, inference
pre-processing and the ONNX metadata all read it from here.
"""

from __future__ import annotations

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]
