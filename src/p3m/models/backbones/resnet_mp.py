"""ResNet-34 with max-pooling: every convolution has stride 1, the five downsamplings are
index-returning 3x3/stride-2 max-pools (the backbone of P3M-Net r34, SPEC-r34 section 4).

Its ImageNet weights were released by the P3M authors as `r34mp_pretrained_imagenet.pth.tar`;
the key names (`conv1`, `bn1`, `layer1..4`, `fc`) follow torchvision's ResNet so those weights load.
"""

from __future__ import annotations

from torch import Tensor, nn

LAYER_DEPTHS = (3, 4, 6, 3)
LAYER_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and a residual; a 1x1 conv + BN shortcut when the width changes."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def make_layer(in_channels: int, channels: int, depth: int) -> nn.Sequential:
    """A ResNet stage: `depth` BasicBlocks, the first one mapping in_channels -> channels."""
    blocks = [BasicBlock(in_channels, channels)]
    blocks += [BasicBlock(channels, channels) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class ResNetMP(nn.Module):
    """The max-pooling ResNet-34 (stride-1 7x7 stem, five index max-pools, unused avgpool + fc).

    P3M-Net calls its parts one by one (see `P3MNetR34.encode`); `forward` is the plain
    classifier path, kept for completeness and ImageNet-weight sanity checks.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        for k in range(1, 6):
            # torch's max-pool keeps the first maximum of the row-major window scan on ties,
            # the rule the official model relies on.
            self.add_module(
                f"maxpool{k}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1, return_indices=True)
            )
        in_channels = 64
        for k, (channels, depth) in enumerate(
            zip(LAYER_WIDTHS, LAYER_DEPTHS, strict=True), start=1
        ):
            self.add_module(f"layer{k}", make_layer(in_channels, channels, depth))
            in_channels = channels
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x, _ = self.maxpool1(x)
        x, _ = self.maxpool2(x)
        x = self.layer1(x)
        x, _ = self.maxpool3(x)
        x = self.layer2(x)
        x, _ = self.maxpool4(x)
        x = self.layer3(x)
        x, _ = self.maxpool5(x)
        x = self.layer4(x)
        return self.fc(self.avgpool(x).flatten(1))
