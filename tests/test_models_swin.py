"""P3M-Net Swin-T against the reference vectors (../shared/reference/models, section "swin")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REFERENCE_DIR, fcp_output_shapes, requires_shared, shared_reference
from p3m.errors import InputSizeError
from p3m.models.backbones.swin import (
    P3MNetSwinT,
    SwinBlock,
    relative_position_index,
    window_attention_mask,
)
from p3m.models.p3mnet import P3MOutput, fuse_global_local
from reference_fill import fill_model, load_manifest

MODELS_DIR = REFERENCE_DIR / "models"
OUTPUTS = ("global", "local", "fusion", "side2", "side1", "side0")
# Strict CPU tier (README "swin": a float32 re-implementation lands within ~1e-5; this one is
# bit-exact on the reference machine). The README's portable tier is 1e-4 / 1e-4.
LOGIT_ATOL, LOGIT_RTOL = 2e-5, 1e-5
ALPHA_ATOL = 1e-5
NEAR_TIE = 1e-3


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load_manifest(MODELS_DIR / "swin_state_dict.json")


@pytest.fixture(scope="module")
def model(manifest: dict) -> P3MNetSwinT:
    """One filled Swin-T model for the module (building and filling takes a few seconds)."""
    net = P3MNetSwinT().eval()
    fill_model(net, manifest)
    return net


def run(model: torch.nn.Module, x: torch.Tensor, threads: int = 1) -> P3MOutput:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            return model(x)
    finally:
        torch.set_num_threads(previous)


def spec_mask(height: int, width: int, shift: int) -> np.ndarray | None:
    """SPEC-swin 5.2/5.4 transcribed literally (region labels per axis), as an oracle."""
    window = 7
    pad_h = (7 - height % 7) % 7 if min(height, width) > 7 else 0
    pad_w = (7 - width % 7) % 7 if min(height, width) > 7 else 0
    if shift == 0 and pad_h == 0 and pad_w == 0:
        return None

    def labels(length: int, pad: int) -> np.ndarray:
        out = np.empty(length + pad, dtype=np.int64)
        for u in range(length + pad):
            if shift == 0:
                out[u] = 0 if u < length else 1
            elif u < length - shift:
                out[u] = 0
            elif u < length + pad - shift:
                out[u] = 1
            else:
                out[u] = 2
        return out

    rows, cols = labels(height, pad_h), labels(width, pad_w)
    masks = []
    for wy in range(0, height + pad_h, window):
        for wx in range(0, width + pad_w, window):
            token = [(rows[wy + i], cols[wx + j]) for i in range(window) for j in range(window)]
            pair = np.array([[a != b for b in token] for a in token])
            masks.append(np.where(pair, -100.0, 0.0))
    return np.stack(masks).astype(np.float32)


def test_state_dict_matches_manifest(model: P3MNetSwinT, manifest: dict) -> None:
    mine = [
        (k, list(v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in model.state_dict().items()
    ]
    expected = [(key, shape, dtype) for key, shape, dtype, _kind, _filled in manifest["entries"]]
    assert len(expected) == 480
    assert mine == expected
    assert model.num_parameters() == manifest["param_count"] == 45_128_206
    assert sum(p.numel() for p in model.encoder_parameters()) == 26_475_354


def test_relative_position_index_follows_spec() -> None:
    index = relative_position_index(7)
    coords = [(n // 7, n % 7) for n in range(49)]
    expected = [[(yn - ym + 6) * 13 + (xn - xm + 6) for (ym, xm) in coords] for (yn, xn) in coords]
    assert index.dtype == torch.int64
    assert index.tolist() == expected


@pytest.mark.parametrize("shift", [0, 3])
def test_runtime_mask_matches_spec(shift: int) -> None:
    """Every grid the official model accepts (both sides > 7), sampled over 8..44."""
    for grid in [(h, w) for h in range(8, 45, 3) for w in (8, 13, 14, 21, 30, 44)]:
        expected = spec_mask(*grid, shift)
        mine = window_attention_mask(*grid, shift)
        if expected is None:
            assert mine is None, grid
        else:
            assert mine is not None and mine.dtype == torch.float32
            np.testing.assert_array_equal(mine.numpy(), expected, err_msg=str(grid))


def test_grids_smaller_than_the_window() -> None:
    """Small inputs give grids below the official limits (side < 8): the grid is padded to a
    whole window. Content never attends to padding; and when the grid is no larger than the
    shift, all content moves together, so a shifted block equals an unshifted one."""
    for height, width in [(1, 1), (2, 3), (4, 6), (3, 7), (6, 9)]:
        pad_h, pad_w = (-height) % 7, (-width) % 7
        for shift in (0, 3):
            mask = window_attention_mask(height, width, shift)
            assert mask is not None
            rows = (np.arange(height + pad_h) + shift) % (height + pad_h) < height
            cols = (np.arange(width + pad_w) + shift) % (width + pad_w) < width
            content = (rows[:, None] & cols[None, :]).reshape(
                (height + pad_h) // 7, 7, (width + pad_w) // 7, 7
            )
            content = content.transpose(0, 2, 1, 3).reshape(-1, 49)
            allowed = mask.numpy() == 0
            assert np.all(np.diagonal(allowed, axis1=1, axis2=2))
            assert not np.any(allowed & content[:, :, None] & ~content[:, None, :])

    torch.manual_seed(0)
    unshifted = SwinBlock(96, 3, shift=0, mask_grid=(8, 8)).eval()
    shifted = SwinBlock(96, 3, shift=3, mask_grid=(8, 8)).eval()
    shifted.load_state_dict(unshifted.state_dict(), strict=True)
    for height, width in [(1, 1), (2, 3), (3, 1)]:
        x = torch.randn(2, height * width, 96)
        with torch.no_grad():
            outputs = [
                block(x, height, width, window_attention_mask(height, width, block.shift))
                for block in (unshifted, shifted)
            ]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_stored_masks_are_the_runtime_masks_of_the_512_grid(model: P3MNetSwinT) -> None:
    """The persistent buffers (kept for strict loading) equal what forward uses at 512x512."""
    shapes = {0: 361, 1: 100, 2: 25, 3: 9}
    for stage, layer in enumerate(model.encoder.layers):
        grid = 512 // 2 ** (stage + 2)
        for block in layer.blocks:
            assert block.attn_mask.shape == (shapes[stage], 49, 49)
            np.testing.assert_array_equal(
                block.attn_mask.numpy(), spec_mask(grid, grid, block.shift)
            )
            assert torch.equal(block.attn_mask, window_attention_mask(grid, grid, block.shift))


def check_against_reference(out: P3MOutput, reference: np.lib.npyio.NpzFile) -> None:
    global_ref = reference["global"]
    ordered = np.sort(global_ref, axis=1)
    clear = (ordered[:, -1] - ordered[:, -2] >= NEAR_TIE)[:, None]  # N x 1 x H x W
    for name, tensor in zip(OUTPUTS, out, strict=True):
        mine, ref = tensor.numpy(), reference[name]
        assert mine.shape == ref.shape, name
        if name == "local":
            np.testing.assert_allclose(mine, ref, rtol=0, atol=ALPHA_ATOL, err_msg=name)
        elif name == "fusion":
            np.testing.assert_allclose(mine[clear], ref[clear], rtol=0, atol=ALPHA_ATOL)
            own = fuse_global_local(out.global_logits, out.local).numpy()
            assert np.array_equal(mine[~clear], own[~clear])
        else:
            np.testing.assert_allclose(mine, ref, rtol=LOGIT_RTOL, atol=LOGIT_ATOL, err_msg=name)
    classes_mine = out.global_logits.numpy().argmax(axis=1)[:, None]
    classes_ref = global_ref.argmax(axis=1)[:, None]
    assert np.array_equal(classes_mine[clear], classes_ref[clear])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file_name", "threads"),
    [
        ("swin_io_256x256.npz", 1),
        ("swin_io_256x256.npz", 2),
        pytest.param("swin_io_320x448.npz", 1, marks=requires_shared),
    ],
)
def test_outputs_match_reference(model: P3MNetSwinT, file_name: str, threads: int) -> None:
    path = MODELS_DIR / file_name
    if not path.exists():
        path = shared_reference(f"models/{file_name}")
    reference = np.load(path)
    out = run(model, torch.from_numpy(reference["input"]), threads)
    check_against_reference(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(32, 32), (64, 96), (224, 224), (448, 448), (96, 32)])
def test_runs_on_sizes_the_official_model_rejects(
    model: P3MNetSwinT, size: tuple[int, int]
) -> None:
    """224x224 and 448x448 crash the official code (grid sides multiples of 7); here they run."""
    height, width = size
    x = torch.from_numpy(
        np.random.default_rng(height * 1000 + width).standard_normal((1, 3, height, width))
    )
    out = run(model, x.float())
    assert out.global_logits.shape == (1, 3, height, width)
    assert out.local.shape == out.fusion.shape == (1, 1, height, width)
    for tensor in out:
        assert torch.isfinite(tensor).all()
    assert torch.equal(out.fusion, fuse_global_local(out.global_logits, out.local))
    assert float(out.local.min()) >= 0.0 and float(out.local.max()) <= 1.0


def test_batch_items_are_independent(model: P3MNetSwinT) -> None:
    """Masks broadcast over the batch correctly: a batch of two equals two single runs."""
    x = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 3, 64, 96))).float()
    together = run(model, x)
    for i in range(2):
        alone = run(model, x[i : i + 1])
        for a, b in zip(together, alone, strict=True):
            torch.testing.assert_close(a[i : i + 1], b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(1, 3, 100, 96),
        torch.zeros(1, 3, 96, 16),
        torch.zeros(3, 96, 96),
        torch.zeros(1, 1, 64, 64),
        torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
    ],
    ids=["not-multiple", "too-small", "no-batch", "one-channel", "uint8"],
)
def test_rejects_bad_input(model: P3MNetSwinT, x: torch.Tensor) -> None:
    with pytest.raises(InputSizeError, match="p3mnet-swin-t"):
        model(x)


def test_model_attributes(model: P3MNetSwinT) -> None:
    assert model.variant == "p3mnet-swin-t"
    assert model.min_size == 32 and model.size_multiple == 32
    # FCP hook points are the five skip feature maps, shallowest first.
    assert fcp_output_shapes(model, torch.zeros(1, 3, 64, 96)) == [
        (1, 48, 64, 96),
        (1, 96, 32, 48),
        (1, 96, 16, 24),
        (1, 192, 8, 12),
        (1, 384, 4, 6),
    ]
