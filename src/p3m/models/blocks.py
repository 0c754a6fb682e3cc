"""P3M-Net building blocks: decoder stages, TFI, sBFI and dBFI (paper sections 3.2-3.3).

Attribute names and child indices follow the official modules, so state_dict keys such as
`decoder4_g.6.weight`, `tfi_3.transform.weight` or `dbfi_2.conv2.weight` come out unchanged.
The blocks are backbone-agnostic: every width is a constructor argument.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from p3m.models.ops import BilinearUpsample, MaxPool2Stride


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, padding 1 (size-preserving)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """1x1 convolution without bias (the channel transforms of TFI / BFI)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """The three children of a CBR: Conv 3x3 (bias) -> BatchNorm -> ReLU."""
    return [conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def decoder_stage(widths: Sequence[int], upsample: bool) -> nn.Sequential:
    """Consecutive CBRs through `widths` (len 3 or 4: 2 or 3 CBRs), then optionally bilinear x2.

    r34 stages go in -> in -> in -> out, e.g. widths (512, 512, 512, 256); Swin-T / ViTAE-S
    stages go in -> out -> out -> out, e.g. (768, 384, 384, 384). The upsample, if any, is
    child 9 (after three CBRs), as in the official keys.
    """
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += conv_bn_relu(a, b)
    if upsample:
        layers.append(BilinearUpsample(2))
    return nn.Sequential(*layers)


def decoder0_global_stage(widths: Sequence[int]) -> nn.Sequential:
    """The last global stage: CBR, CBR, then a plain Conv 3x3 (no BN, no ReLU), then bilinear x2.

    widths = (in, mid1, mid2, out): r34 (64, 64, 64, 3) produces the logits directly; Swin-T
    (96, 48, 48, 48) and ViTAE-S (64, 32, 32, 32) feed `decoder_final_g` afterwards.
    """
    c_in, c_mid1, c_mid2, c_out = widths
    return nn.Sequential(
        *conv_bn_relu(c_in, c_mid1),
        *conv_bn_relu(c_mid1, c_mid2),
        conv3x3(c_mid2, c_out),
        BilinearUpsample(2),
    )


class TFI(nn.Module):
    """Tripartite feature integration: fuse global guidance, local decoder and encoder features.

    One 1x1 `transform` (shared by the three inputs) halves each to c/2 channels; a CBR
    (no conv bias) maps the concatenation [global, local, encoder] back to c channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.transform = conv1x1(channels, channels // 2)
        self.conv1 = conv3x3(3 * (channels // 2), channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(
        self, global_feature: Tensor, local_feature: Tensor, encoder_feature: Tensor
    ) -> Tensor:
        fused = torch.cat(
            [
                self.transform(global_feature),
                self.transform(local_feature),
                self.transform(encoder_feature),
            ],
            dim=1,
        )
        return self.relu(self.bn1(self.conv1(fused)))


class SBFI(nn.Module):
    """Shallow bipartite feature integration: refine a local feature with the shallowest encoder feature.

    The shallow feature (full resolution) is max-pooled with kernel 2 and stride `stride`,
    projected to c/2 channels and concatenated with the projected local feature; a CBR
    (no conv bias) gives the residual added to the local feature.
    """

    def __init__(self, channels: int, shallow_channels: int, stride: int) -> None:
        super().__init__()
        self.transform1 = conv1x1(channels, channels // 2)
        self.transform2 = conv1x1(shallow_channels, channels // 2)
        self.maxpool = MaxPool2Stride(stride)
        self.conv1 = conv3x3(channels, channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, local_feature: Tensor, shallow_feature: Tensor) -> Tensor:
        shallow = self.transform2(self.maxpool(shallow_feature))
        fused = torch.cat([self.transform1(local_feature), shallow], dim=1)
        return self.relu(self.bn1(self.conv1(fused))) + local_feature


class DBFI(nn.Module):
    """Deep bipartite feature integration: refine a global feature with the deepest encoder feature.

    Returns (refined feature, side logits at full resolution). The deep feature is projected by
    a 1x1 conv *before* the bilinear x`scale` upsampling; the side head is a 3x3 conv to 3 classes
    upsampled by x`side_scale`.
    """

    def __init__(
        self, channels: int, top_channels: int, scale: int, side_scale: int, classes: int = 3
    ) -> None:
        super().__init__()
        self.transform1 = conv1x1(channels, channels // 2)
        self.transform2 = conv1x1(top_channels, channels // 2)
        self.upsample = BilinearUpsample(scale)
        self.conv1 = conv3x3(channels, channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, classes, bias=False)
        self.upsample2 = BilinearUpsample(side_scale)

    def forward(self, global_feature: Tensor, top_feature: Tensor) -> tuple[Tensor, Tensor]:
        deep = self.upsample(self.transform2(top_feature))
        fused = torch.cat([self.transform1(global_feature), deep], dim=1)
        refined = self.relu(self.bn1(self.conv1(fused))) + global_feature
        side_logits = self.upsample2(self.conv2(refined))
        return refined, side_logits
