"""Encoders that plug into the P3M-Net framework (ResNet-34 with max-pooling, Swin-T, ViTAE-S)."""

from __future__ import annotations
