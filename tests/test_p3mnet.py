"""The backbone-agnostic framework: P3MDecoder layouts for Swin-T / ViTAE-S and P3MNet with a toy encoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import REFERENCE_DIR
from p3m.errors import InputSizeError
from p3m.models import EncoderOutput, P3MDecoder, P3MNet, P3MOutput, fuse_global_local, predict
from p3m.models.ops import max_pool2x2_with_indices
from reference_fill import load_manifest


@pytest.mark.parametrize(
    "variant, widths, parameters",
    [
        ("swin", (768, (384, 192, 96, 96), 48, 48), 18_652_852),
        ("vitae", (512, (256, 128, 64, 64), 32, 32), 8_296_740),
    ],
)
def test_decoder_layout_equals_official(variant: str, widths: tuple, parameters: int) -> None:
    entries = load_manifest(REFERENCE_DIR / "models" / f"{variant}_state_dict.json")["entries"]
    expected = [
        (key.removeprefix("decoder."), list(shape), dtype)
        for key, shape, dtype, _kind, _filled in entries
        if key.startswith("decoder.")
    ]
    decoder = P3MDecoder(*widths)
    actual = [
        (key, list(t.shape), str(t.dtype).removeprefix("torch."))
        for key, t in decoder.state_dict().items()
    ]
    assert actual == expected
    assert sum(p.numel() for p in decoder.parameters()) == parameters


class ToyEncoder(nn.Module):
    """Five conv + 2x2 index-pool levels and a 32-channel top.

    Level widths follow the contract: features[0] is the shallow feature, features[k] for
    k = 1..4 has the width of the decoder stage that unpools it (C4, C3, C2, C1), and
    features[0] that of the last stage (last_width).
    """

    widths = (8, 8, 8, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        ins = (3, *self.widths[:-1])
        self.levels = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size=3, padding=1) for a, b in zip(ins, self.widths, strict=True)
        )
        self.top = nn.Conv2d(16, 32, kernel_size=1)

    def input_size_problem(self, height: int, width: int) -> str | None:
        return "toy encoders refuse square inputs" if height == width else None

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        features, indices = [], []
        for level in self.levels:
            feature = torch.relu(level(x))
            x, index = max_pool2x2_with_indices(feature)
            features.append(feature)
            indices.append(index)
        return EncoderOutput(self.top(x), tuple(features), tuple(indices))


@pytest.fixture(scope="module")
def toy_model() -> P3MNet:
    torch.manual_seed(0)
    decoder = P3MDecoder(32, (16, 16, 8, 8), 8, 8)
    return P3MNet(
        ToyEncoder(), decoder, variant="toy", min_size=64, fcp_layers=("encoder.levels.0",)
    ).eval()


def test_toy_model_runs_end_to_end(toy_model: P3MNet) -> None:
    x = torch.randn(2, 3, 64, 96)
    output = predict(toy_model, x)
    assert isinstance(output, P3MOutput)
    for tensor, channels in zip(output, (3, 1, 1, 3, 3, 3), strict=True):
        assert tensor.shape == (2, channels, 64, 96)
    assert torch.equal(output.fusion, fuse_global_local(output.global_logits, output.local))
    assert toy_model.backbone() is toy_model.encoder
    n_encoder = sum(p.numel() for p in toy_model.encoder_parameters())
    n_decoder = sum(p.numel() for p in toy_model.decoder_parameters())
    assert n_encoder + n_decoder == toy_model.num_parameters()


@pytest.mark.parametrize(
    "shape, problem",
    [
        ((1, 3, 32, 96), "at least 64"),
        ((1, 3, 64, 100), "multiples of 32"),
        ((1, 3, 64, 64), "toy encoders refuse square inputs"),
    ],
)
def test_toy_model_input_checks(toy_model: P3MNet, shape: tuple, problem: str) -> None:
    with pytest.raises(InputSizeError, match=problem):
        toy_model(torch.zeros(shape))
