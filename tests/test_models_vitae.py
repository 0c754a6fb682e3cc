"""P3M-Net ViTAE-S against the reference vectors (../shared/reference/models, section "vitae")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import p3m.models.backbones.vitae as vitae
from conftest import REFERENCE_DIR, fcp_output_shapes, requires_shared, shared_reference
from p3m.errors import InputSizeError
from p3m.models.backbones.vitae import P3MNetViTAES, performer_random_features
from p3m.models.p3mnet import P3MOutput, fuse_global_local
from reference_fill import fill_model, load_manifest

MODELS_DIR = REFERENCE_DIR / "models"
OUTPUTS = ("global", "local", "fusion", "side2", "side1", "side0")
PERFORMER_KEYS = ("encoder.layers.0.NC.0.attn.w", "encoder.layers.0.NC.1.attn.w")
# README "vitae", strict tier (CPU, float32): |mine - ref| <= atol, rtol 0; fusion exact.
STRICT_ATOL = {1.0: 1e-5, 0.5: 1e-6}
REFERENCES = [
    pytest.param("vitae_io_256x256.npz", 1.0, id="vitae_io_256x256.npz"),
    pytest.param("vitae_io_320x448.npz", 1.0, id="vitae_io_320x448.npz", marks=requires_shared),
    pytest.param("vitae_io_256x256_gain0.5.npz", 0.5, id="vitae_io_256x256_gain0.5.npz"),
]


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest(MODELS_DIR / "vitae_state_dict.json")


@pytest.fixture(scope="module")
def model() -> P3MNetViTAES:
    """One model for the module; each test fills it with the gain it needs."""
    return P3MNetViTAES().eval()


def run(model: torch.nn.Module, x: torch.Tensor, threads: int = 1) -> P3MOutput:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        torch.set_num_threads(previous)


def load_reference(file_name: str) -> np.lib.npyio.NpzFile:
    path = MODELS_DIR / file_name
    if not path.exists():
        path = shared_reference(f"models/{file_name}")
    return np.load(path)


def prepare(model: P3MNetViTAES, manifest: dict, gain: float, reference) -> None:
    """Fill by the rule with `gain` (strict loading) and inject the reference Performer features."""
    fill_model(model, manifest, gain)
    buffers = dict(model.named_buffers())
    for key in PERFORMER_KEYS:
        buffers[key].copy_(torch.from_numpy(reference[f"nonstate.{key}"]))


def test_state_dict_matches_manifest(model: P3MNetViTAES, manifest: dict) -> None:
    mine = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    expected = [(key, shape, dtype) for key, shape, dtype, _kind, _filled in manifest["entries"]]
    assert len(expected) == 808
    assert mine == expected
    assert model.num_parameters() == manifest["param_count"] == 27_463_052
    assert sum(p.numel() for p in model.encoder_parameters()) == 19_166_312


def test_performer_features_are_nonpersistent_buffers(model: P3MNetViTAES) -> None:
    buffers = dict(model.named_buffers())
    state = model.state_dict()
    for key in PERFORMER_KEYS:
        assert key in buffers and key not in state
        assert buffers[key].shape == (1, 32, 64) and buffers[key].dtype == torch.float32
    assert [n for n in buffers if n.endswith(".w")] == list(PERFORMER_KEYS)


def test_performer_features_follow_the_official_recipe() -> None:
    """randn, then per head orthogonal_ (QR of the transpose, sign fix), times sqrt(m)."""
    features = performer_random_features(32, 64, torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    expected = torch.randn(1, 32, 64, generator=generator)
    torch.nn.init.orthogonal_(expected[0], generator=generator)
    assert torch.equal(features, expected * math.sqrt(32))
    gram = features[0] @ features[0].T
    torch.testing.assert_close(gram, 32 * torch.eye(32), atol=1e-4, rtol=0)


def test_performer_features_deterministic_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = performer_random_features(32, 64, torch.Generator().manual_seed(vitae.PERFORMER_SEED))
    assert torch.equal(torch.get_rng_state(), state)

    encoders = []
    for seed in (1, 2):  # the global seed must not matter
        torch.manual_seed(seed)
        encoders.append(vitae.ViTAESEncoder())
    w_a = [cell.attn.w for cell in encoders[0].layers[0].NC]
    w_b = [cell.attn.w for cell in encoders[1].layers[0].NC]
    assert all(torch.equal(a, b) for a, b in zip(w_a, w_b, strict=True))
    assert torch.equal(w_a[0], first)  # NC.0 draws first from the seeded generator
    assert not torch.equal(w_a[0], w_a[1])
    other = vitae.ViTAESEncoder(performer_seed=vitae.PERFORMER_SEED + 1)
    assert not torch.equal(other.layers[0].NC[0].attn.w, w_a[0])


@pytest.mark.slow
@pytest.mark.parametrize(("file_name", "gain"), REFERENCES)
def test_outputs_match_reference(
    model: P3MNetViTAES, manifest: dict, file_name: str, gain: float
) -> None:
    reference = load_reference(file_name)
    prepare(model, manifest, gain, reference)
    out = run(model, torch.from_numpy(reference["input"]))
    atol = STRICT_ATOL[gain]
    for name, tensor in zip(OUTPUTS, out, strict=True):
        mine = tensor.numpy()
        assert mine.shape == reference[name].shape, name
        if name == "fusion":
            assert np.array_equal(mine, reference[name])
        else:
            np.testing.assert_allclose(mine, reference[name], rtol=0, atol=atol, err_msg=name)
    probe = fuse_global_local(
        torch.from_numpy(reference["fusion_probe_global"]), torch.from_numpy(reference["local"])
    )
    assert np.array_equal(probe.numpy(), reference["fusion_probe"])


@pytest.mark.slow
def test_thread_count_does_not_matter(model: P3MNetViTAES, manifest: dict) -> None:
    reference = load_reference("vitae_io_256x256_gain0.5.npz")
    prepare(model, manifest, 0.5, reference)
    x = torch.from_numpy(reference["input"])
    one, two = run(model, x, threads=1), run(model, x, threads=2)
    for name, a, b in zip(OUTPUTS, one, two, strict=True):
        np.testing.assert_allclose(
            b.numpy(), reference[name], rtol=0, atol=STRICT_ATOL[0.5], err_msg=name
        )
        torch.testing.assert_close(a, b, rtol=0, atol=STRICT_ATOL[0.5])


@pytest.mark.slow
def test_fused_attention_path_meets_the_strict_tolerances(
    model: P3MNetViTAES, manifest: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large inputs (attention matrix > ATTENTION_EXACT_ELEMENTS) use the fused SDPA kernel."""
    reference = load_reference("vitae_io_256x256_gain0.5.npz")
    prepare(model, manifest, 0.5, reference)
    monkeypatch.setattr(vitae, "ATTENTION_EXACT_ELEMENTS", 0)
    out = run(model, torch.from_numpy(reference["input"]))
    for name, tensor in zip(OUTPUTS, out, strict=True):
        np.testing.assert_allclose(
            tensor.numpy(), reference[name], rtol=0, atol=STRICT_ATOL[0.5], err_msg=name
        )


@pytest.mark.parametrize("size", [(32, 32), (96, 160), (224, 224)])
def test_runs_on_several_sizes(model: P3MNetViTAES, size: tuple[int, int]) -> None:
    height, width = size
    x = torch.from_numpy(
        np.random.default_rng(height + width).standard_normal((2, 3, height, width))
    )
    out = run(model, x.float())
    assert out.global_logits.shape == (2, 3, height, width)
    assert out.local.shape == out.fusion.shape == (2, 1, height, width)
    for tensor in out:
        assert torch.isfinite(tensor).all()
    assert torch.equal(out.fusion, fuse_global_local(out.global_logits, out.local))
    # No coupling between batch items (the Performer sums run over one image's tokens).
    alone = run(model, x[1:].float())
    for a, b in zip(out, alone, strict=True):
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)


def test_deterministic_across_constructions() -> None:
    """Two freshly built models with the same weights give identical outputs (no hidden RNG)."""
    first, second = P3MNetViTAES().eval(), P3MNetViTAES().eval()
    second.load_state_dict(first.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 3, 64, 64))).float()
    for a, b in zip(run(first, x), run(second, x), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(1, 3, 240, 240),
        torch.zeros(1, 3, 96, 16),
        torch.zeros(3, 96, 96),
        torch.zeros(1, 3, 64, 64, dtype=torch.int64),
    ],
    ids=["not-multiple", "too-small", "no-batch", "integer"],
)
def test_rejects_bad_input(model: P3MNetViTAES, x: torch.Tensor) -> None:
    with pytest.raises(InputSizeError, match="p3mnet-vitae-s"):
        model(x)


def test_model_attributes(model: P3MNetViTAES) -> None:
    assert model.variant == "p3mnet-vitae-s"
    assert model.min_size == 32 and model.size_multiple == 32
    assert "performer" in (P3MNetViTAES.__doc__ or "").lower()
    # FCP hook points are the five skip feature maps, shallowest first.
    assert fcp_output_shapes(model, torch.zeros(1, 3, 64, 96)) == [
        (1, 32, 64, 96),
        (1, 64, 32, 48),
        (1, 64, 16, 24),
        (1, 128, 8, 12),
        (1, 256, 4, 6),
    ]
