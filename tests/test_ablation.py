"""The Table 7 ablation models (p3m.models.ablation and `Integration` in p3m.models.p3mnet).

Every ablation is a registered model, so tests/test_registry.py already builds each one on
every backbone, runs it on a small input, checks its outputs (None side outputs without dBFI),
its parameter count against its spec and a save/load round trip; test_training.py trains one
for a step through `p3m train`. Here: the counts against Table 7, the layout against the full
models (built on the meta device: no memory, no initialisation), and the data flow that
replaces each left-out module.
"""

from __future__ import annotations

import pytest
import torch

from p3m.errors import ModelNotFoundError
from p3m.models import Integration, P3MDecoder, P3MNet, get_spec, list_models
from p3m.models.ablation import (
    ABLATIONS,
    BACKBONES,
    ablation_model_name,
    ablation_parameter_counts,
    get_ablation,
)
from p3m.models.ops import max_unpool2d_last_wins
from p3m.training.losses import cross_entropy_loss, p3m_loss
from test_p3mnet import ToyEncoder

TABLE7_PARAMETERS_M = {"basic": 37.67, "tfi": 38.93, "tfi-sbfi": 39.17, "tfi-dbfi": 39.24, "full": 39.48}
MODULE_PREFIXES = {"tfi": "tfi_", "sbfi": "sbfi_", "dbfi": "dbfi_"}


def build_on_meta(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return get_spec(name).constructor()


@pytest.fixture(scope="module")
def r34_on_meta() -> dict[str, torch.nn.Module]:
    return {a.key: build_on_meta(ablation_model_name(a.key, "r34")) for a in ABLATIONS}


def test_every_ablation_is_registered_on_every_backbone() -> None:
    names = {ablation_model_name(a.key, b) for a in ABLATIONS for b in BACKBONES}
    assert names <= set(list_models())
    assert ablation_model_name("basic", "swin-t") == "basic-swin-t"
    assert ablation_model_name("tfi-sbfi", "vitae-s") == "p3mnet-vitae-s-tfi-sbfi"
    assert ablation_model_name("full", "r34") == "p3mnet-r34"
    for ablation in ABLATIONS:
        for backbone in BACKBONES:
            spec = get_spec(ablation_model_name(ablation.key, backbone))
            assert spec.ablation_of == (None if ablation.key == "full" else f"p3mnet-{backbone}")
    with pytest.raises(ModelNotFoundError, match="Table 7 rows: basic, tfi"):
        get_ablation("sbfi")
    with pytest.raises(ModelNotFoundError, match="r34, swin-t, vitae-s"):
        ablation_model_name("basic", "r50")


def test_r34_parameter_counts_are_table7s(r34_on_meta: dict[str, torch.nn.Module]) -> None:
    counts = ablation_parameter_counts("r34")
    assert list(counts) == [a.key for a in ABLATIONS]
    for key, model in r34_on_meta.items():
        assert model.num_parameters() == counts[key]
        assert round(counts[key] / 1e6, 2) == pytest.approx(TABLE7_PARAMETERS_M[key], abs=1e-9), key
        assert get_ablation(key).paper_parameters_m == TABLE7_PARAMETERS_M[key]
    assert counts["full"] == 39_478_060 and counts["basic"] == 37_666_860


@pytest.mark.parametrize("backbone", BACKBONES)
def test_ablations_only_lose_their_modules(backbone: str) -> None:
    """Same keys, order and shapes as the full model minus the left-out modules' keys; the
    left-out modules are attributes set to None."""
    full = build_on_meta(f"p3mnet-{backbone}")
    full_state = full.state_dict()
    owner_prefix = "" if backbone == "r34" else "decoder."
    for ablation in ABLATIONS[:-1]:
        model = build_on_meta(ablation_model_name(ablation.key, backbone))
        assert model.integration == ablation.integration
        left_out = [m for m in MODULE_PREFIXES if m not in ablation.integration.modules]
        expected = [
            (key, tuple(value.shape))
            for key, value in full_state.items()
            if not any(key.startswith(owner_prefix + MODULE_PREFIXES[m]) for m in left_out)
        ]
        assert [(key, tuple(value.shape)) for key, value in model.state_dict().items()] == expected
        owner = model if backbone == "r34" else model.decoder
        for module in left_out:
            levels = (3, 2, 1, 0) if module == "tfi" else (2, 1, 0)
            for level in levels:
                assert getattr(owner, f"{module}_{level}") is None
        # Modules absent from named_modules(): code walking the model never meets a None.
        assert all(m is not None for _, m in model.named_modules())


def _toy(integration: Integration) -> P3MNet:
    torch.manual_seed(0)
    decoder = P3MDecoder(32, (16, 16, 8, 8), 8, 8, integration=integration)
    return P3MNet(ToyEncoder(), decoder, variant="toy", min_size=64).eval()


def test_basic_framework_data_flow() -> None:
    """Without TFI, sBFI and dBFI: the global decoder is a plain chain of its stages, and each
    matting-decoder stage consumes the unpooled output of the one before."""
    model = _toy(Integration(tfi=False, sbfi=False, dbfi=False))
    d = model.decoder
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = model(x)
        enc = model.encoder(x)

        def unpool(t: torch.Tensor, level: int) -> torch.Tensor:
            return max_unpool2d_last_wins(t, enc.indices[level], enc.features[level].shape[-2:])

        g = enc.top
        for stage in (d.decoder4_g, d.decoder3_g, d.decoder2_g, d.decoder1_g, d.decoder0_g, d.decoder_final_g):
            g = stage(g)
        t = enc.top
        for level, stage in zip((4, 3, 2, 1, 0), (d.decoder4_l, d.decoder3_l, d.decoder2_l, d.decoder1_l, d.decoder0_l), strict=True):
            t = unpool(stage(t), level)
        local = torch.sigmoid(d.decoder_final_l(t))
    assert torch.equal(out.global_logits, g) and torch.equal(out.local, local)
    assert out.side2 is None and out.side1 is None and out.side0 is None
    assert model.output_names == ("global_logits", "local", "fusion")


def test_left_out_residual_modules_are_identities() -> None:
    """+TFI+dBFI differs from the full model only by sBFI: with every sBFI's residual branch
    zeroed (BN weight and bias 0), the full model computes exactly what the ablation does."""
    ablation = _toy(Integration(tfi=True, sbfi=False, dbfi=True))
    full = _toy(Integration())
    state = full.state_dict()
    state.update(ablation.state_dict())
    for key in state:
        if key.startswith("decoder.sbfi_") and key.split(".")[-2] == "bn1" and key.endswith(("weight", "bias")):
            state[key] = torch.zeros_like(state[key])
    full.load_state_dict(state)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for mine, theirs in zip(ablation(x), full(x), strict=True):
            assert torch.equal(mine, theirs)


def test_loss_without_side_outputs_drops_only_deep_supervision() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 32, 32, generator=generator)
    local = torch.rand(2, 1, 32, 32, generator=generator)
    alpha = torch.rand(2, 1, 32, 32, generator=generator) * 255  # official scale: 0..255
    trimap = torch.tensor([0.0, 128.0, 255.0])[torch.randint(0, 3, (2, 1, 32, 32), generator=generator)]
    fusion = local.clone()
    without = p3m_loss((logits, local, fusion, None, None, None), alpha=alpha, trimap=trimap)
    assert torch.equal(without.global_, 3 * cross_entropy_loss(logits, trimap))
    sides = (logits * 0.5, logits * 2.0, -logits)
    with_sides = p3m_loss((logits, local, fusion, *sides), alpha=alpha, trimap=trimap)
    assert torch.equal(with_sides.local, without.local)
    assert torch.equal(with_sides.fusion_alpha, without.fusion_alpha)
    expected = sum(cross_entropy_loss(s, trimap) for s in sides) + 3 * cross_entropy_loss(logits, trimap)
    torch.testing.assert_close(with_sides.global_, expected)
