"""P3M-Net with the max-pooling ResNet-34 encoder, in the official flat state_dict layout.

The official class registers every backbone module twice, as `resnet.*` and as the aliases
`encoder0..4` / `mp0..4` (the same module objects), so its checkpoints hold each backbone
tensor under both names; we do the same, which lets official checkpoints load strictly.
Parameters are shared, so `parameters()` counts them once: 39,478,060 (paper: 39.48M),
including the unused ImageNet classifier `resnet.fc`. `P3MNetR34(integration)` builds the
Table 7 ablations (`basic-r34`, `p3mnet-r34-tfi`, ...; see `Integration`).
"""

from __future__ import annotations

from torch import Tensor, nn

from p3m.models.backbones.resnet_mp import ResNetMP
from p3m.models.p3mnet import (
    FULL_INTEGRATION,
    EncoderOutput,
    Integration,
    P3MModel,
    P3MOutput,
    add_decoder_modules,
    decode,
)

R34_TOP_CHANNELS = 512
R34_DECODER_WIDTHS = (256, 128, 64, 64)
R34_SHALLOW_CHANNELS = 64


class P3MNetR34(P3MModel):
    """P3M-Net (ResNet-34): `forward(x) -> P3MOutput` for ImageNet-normalised N x 3 x H x W input.

    `integration` leaves out integration modules for the Table 7 ablations; the variant name
    follows (`basic-r34`, `p3mnet-r34-tfi`, ...).
    """

    variant = "p3mnet-r34"
    min_size = 32
    fcp_layers = ("encoder0", "encoder1", "encoder2", "encoder3", "encoder4")
    backbone_prefix = "resnet"

    def __init__(self, integration: Integration = FULL_INTEGRATION) -> None:
        super().__init__()
        self.integration = integration
        self.variant = integration.variant_name("r34")
        self.resnet = ResNetMP()
        resnet = self.resnet
        # Aliases of the same module objects, registered in the official order.
        self.encoder0 = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)
        self.mp0 = resnet.maxpool1
        self.encoder1 = nn.Sequential(resnet.layer1)
        self.mp1 = resnet.maxpool2
        self.encoder2 = resnet.layer2
        self.mp2 = resnet.maxpool3
        self.encoder3 = resnet.layer3
        self.mp3 = resnet.maxpool4
        self.encoder4 = resnet.layer4
        self.mp4 = resnet.maxpool5
        add_decoder_modules(
            self,
            R34_TOP_CHANNELS,
            R34_DECODER_WIDTHS,
            R34_DECODER_WIDTHS[-1],
            R34_SHALLOW_CHANNELS,
            r34_layout=True,
            integration=integration,
        )

    def encode(self, x: Tensor) -> EncoderOutput:
        """The encoder pass; features are e0, e0p, e1, e2, e3 (the inputs of mp0..mp4), top is e4."""
        e0 = self.encoder0(x)
        e0p, id0 = self.mp0(e0)
        e1p, id1 = self.mp1(e0p)
        e1 = self.encoder1(e1p)
        e2p, id2 = self.mp2(e1)
        e2 = self.encoder2(e2p)
        e3p, id3 = self.mp3(e2)
        e3 = self.encoder3(e3p)
        e4p, id4 = self.mp4(e3)
        e4 = self.encoder4(e4p)
        return EncoderOutput(
            top=e4, features=(e0, e0p, e1, e2, e3), indices=(id0, id1, id2, id3, id4)
        )

    def forward(self, x: Tensor) -> P3MOutput:
        self.check_input(x)
        return decode(self, self.encode(x))


P3M_SOURCE_PAGE = "https://github.com/JizhiziLi/P3M"


def _register() -> None:
    from p3m.models.registry import CheckpointSpec, ModelSpec, register_model

    register_model(
        ModelSpec(
            name="p3mnet-r34",
            constructor=P3MNetR34,
            description="P3M-Net with the max-pooling ResNet-34 encoder (ACM MM 2021 / IJCV 2023), 39.48M parameters",
            min_size=P3MNetR34.min_size,
            size_multiple=P3MNetR34.size_multiple,
            checkpoints=(
                CheckpointSpec(
                    file_name="p3mnet_pretrained_on_p3m10k.pth",
                    url="https://drive.google.com/uc?export=download&id=1Vzbt5NUV-q1KP4M8dDXmzP-3sezYdRSh",
                    source_page=P3M_SOURCE_PAGE,
                    sha256=None,
                    note=(
                        "Conference (ACM MM 2021) release trained on P3M-10k; same state_dict layout as this "
                        "model. No checksum is published. Mirror: https://pan.baidu.com/s/1imTTX6Hx6GfyTJuwhQV3_w "
                        "(password jocr)."
                    ),
                ),
            ),
            backbone_weights=(
                CheckpointSpec(
                    file_name="r34mp_pretrained_imagenet.pth.tar",
                    url="https://drive.google.com/uc?export=download&id=18Pt-klsbkiyonMdGi6dytExQEjzBnHwY",
                    source_page=P3M_SOURCE_PAGE,
                    sha256=None,
                    note=(
                        "ImageNet weights of the max-pooling ResNet-34 (keys conv1/bn1/layer1-4/fc); load into "
                        "model.resnet. Mirror: https://pan.baidu.com/s/1vdMQwtu8lnhtLRPjYFG8rA (password 2v1t)."
                    ),
                ),
            ),
            num_parameters=39_478_060,
        )
    )


_register()
