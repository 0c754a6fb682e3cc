"""The training losses and trimap/fusion utilities against the official reference values."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from p3m.data.trimap import ellipse_kernel, trimap_from_alpha
from p3m.inference.fusion import fuse_trimap_and_local, trimap_from_global_logits
from p3m.training import losses

RTOL, ATOL = 2e-6, 1e-7
BATCHES = ("batch0", "batch1", "batch2")


@pytest.fixture(scope="module")
def loss_reference(reference_dir):
    return json.loads((reference_dir / "losses" / "expected.json").read_text())


@pytest.fixture(scope="module")
def utilities(reference_dir):
    with np.load(reference_dir / "losses" / "utilities.npz") as data:
        return {key: data[key] for key in data.files}


def _batch(reference_dir, name):
    with np.load(reference_dir / "losses" / "batches" / f"{name}.npz") as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


def _loss_calls(b):
    """Our functions in the same role as each official call of expected.json."""
    mask, trimap = b["mask"], b["trimap"]
    local, fusion = b["predict_local"], b["predict_fusion"]
    return {
        "ce_global": lambda: losses.cross_entropy_loss(b["predict_global"], trimap),
        "ce_side2": lambda: losses.cross_entropy_loss(b["predict_global_side2"], trimap),
        "ce_side1": lambda: losses.cross_entropy_loss(b["predict_global_side1"], trimap),
        "ce_side0": lambda: losses.cross_entropy_loss(b["predict_global_side0"], trimap),
        "alpha_local": lambda: losses.alpha_loss(local, mask, trimap),
        "laplacian_local": lambda: losses.laplacian_loss(local, mask, trimap),
        "alpha_whole_fusion": lambda: losses.alpha_loss_whole(fusion, mask),
        "laplacian_whole_fusion": lambda: losses.laplacian_loss_whole(fusion, mask),
        "comp_whole_fusion": lambda: losses.composition_loss_whole(fusion, b["ori"], b["fg"], b["bg"]),
        "alpha_whole_local": lambda: losses.alpha_loss_whole(local, mask),
        "laplacian_whole_local": lambda: losses.laplacian_loss_whole(local, mask),
        "comp_whole_local": lambda: losses.composition_loss_whole(local, b["ori"], b["fg"], b["bg"]),
        "alpha_fusion_trimap": lambda: losses.alpha_loss(fusion, mask, trimap),
        "laplacian_fusion_trimap": lambda: losses.laplacian_loss(fusion, mask, trimap),
    }


def _output(b):
    return (
        b["predict_global"],
        b["predict_local"],
        b["predict_fusion"],
        b["predict_global_side2"],
        b["predict_global_side1"],
        b["predict_global_side0"],
    )


@pytest.mark.parametrize("batch_name", BATCHES)
def test_every_loss_matches_official(reference_dir, loss_reference, batch_name):
    expected = loss_reference["batches"][batch_name]["losses"]
    calls = _loss_calls(_batch(reference_dir, batch_name))
    assert set(calls) == set(expected)
    for key, call in calls.items():
        value = call()
        assert value.dtype == torch.float32
        np.testing.assert_allclose(float(value), expected[key], rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("batch_name", BATCHES)
def test_total_matches_train_py(reference_dir, loss_reference, batch_name):
    expected = loss_reference["batches"][batch_name]["train_py"]
    b = _batch(reference_dir, batch_name)
    parts = losses.p3m_loss(
        _output(b), alpha=b["mask"], trimap=b["trimap"], image=b["ori"],
        foreground=b["fg"], background=b["bg"],
    )
    for field, key in [
        ("global_", "loss_global"),
        ("local", "loss_local"),
        ("fusion_alpha", "loss_fusion_alpha"),
        ("fusion_composition", "loss_fusion_comp"),
        ("total", "loss_total"),
    ]:
        np.testing.assert_allclose(
            float(getattr(parts, field)), expected[key], rtol=RTOL, atol=ATOL, err_msg=key
        )
    # The written float32 order reproduces the official total bit for bit here (the simplified
    # formula g/6 + 2l + 3f + c differs by one ulp on batch0).
    assert np.float32(parts.total.item()) == np.float32(expected["loss_total"])


def test_total_without_foreground_leaves_composition_out(reference_dir, loss_reference, caplog):
    b = _batch(reference_dir, "batch0")
    expected = loss_reference["batches"]["batch0"]["train_py"]
    losses._warned_no_composition = False
    with caplog.at_level(logging.WARNING, logger="p3m.training.losses"):
        parts = losses.p3m_loss(_output(b), alpha=b["mask"], trimap=b["trimap"])
    assert parts.fusion_composition is None
    assert "composition loss is left out" in caplog.text
    g, local, f = expected["loss_global"], expected["loss_local"], expected["loss_fusion_alpha"]
    np.testing.assert_allclose(float(parts.total), g / 6 + 2 * local + 3 * f, rtol=RTOL, atol=ATOL)
    assert parts.as_floats()["fusion_comp"] is None


def test_cross_entropy_class_map_quirks():
    trimap = torch.tensor([0, 1, 2, 3, 127, 128, 129, 254, 255], dtype=torch.float32)
    classes = losses.trimap_to_classes(trimap.view(1, 1, 1, -1))
    assert classes.dtype == torch.int64
    assert classes.view(-1).tolist() == [0, 1, 2, 1, 1, 1, 1, 1, 2]


def test_loss_gradients_flow_to_local_and_logits(reference_dir):
    b = _batch(reference_dir, "batch1")
    output = [t.clone().requires_grad_(True) for t in _output(b)]
    parts = losses.p3m_loss(
        output, alpha=b["mask"], trimap=b["trimap"], image=b["ori"],
        foreground=b["fg"], background=b["bg"],
    )
    parts.total.backward()
    for tensor in output:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0


def test_laplacian_kernel_is_additive_plus_shape():
    kernel = losses.laplacian_kernel()
    assert kernel.dtype == np.float32 and kernel.shape == (5, 5)
    np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kernel[2, 2], 0.112842, atol=1e-6)
    np.testing.assert_allclose(kernel[0, 0], 0.002067, atol=1e-6)
    pyramid = losses.laplacian_pyramid(torch.zeros(1, 1, 64, 64))
    assert [tuple(level.shape[-2:]) for level in pyramid] == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 10, 15, 25, 30])
def test_ellipse_kernels_match_opencv_reference(utilities, k):
    np.testing.assert_array_equal(ellipse_kernel(k), utilities[f"ellipse_k{k}"])


def test_trimap_from_alpha_matches_official(utilities):
    for k in (1, 2, 3, 4, 10, 15, 25, 30):
        np.testing.assert_array_equal(
            trimap_from_alpha(utilities["trimap_in_real"], k), utilities[f"trimap_real_k{k}"], err_msg=f"k={k}"
        )
    for k in (2, 3, 4, 5):
        np.testing.assert_array_equal(
            trimap_from_alpha(utilities["trimap_in_small"], k), utilities[f"trimap_small_k{k}"], err_msg=f"k={k}"
        )
    misuse = trimap_from_alpha(utilities["trimap_in_real"].astype(np.float32) / 255, 15)
    np.testing.assert_array_equal(misuse, utilities["trimap_misuse_float01_k15"])


def test_training_fusion_matches_official(utilities):
    from p3m.models.p3mnet import fuse_global_local

    global_logits = torch.from_numpy(utilities["fusion_global_in"])
    local = torch.from_numpy(utilities["fusion_local_in"])
    np.testing.assert_array_equal(torch.argmax(global_logits, 1).numpy(), utilities["fusion_argmax"])
    fusion = fuse_global_local(global_logits, local)
    np.testing.assert_array_equal(fusion.numpy(), utilities["fusion_out"])


def test_test_time_fusion_matches_official(utilities):
    fused = fuse_trimap_and_local(utilities["fusion_test_global_in"], utilities["fusion_test_local_in"])
    assert fused.dtype == np.float64
    np.testing.assert_array_equal(fused, utilities["fusion_test_out"])


def test_trimap_from_global_logits_matches_official(utilities):
    trimap = trimap_from_global_logits(utilities["segmap_in"])
    assert trimap.dtype == np.uint8
    np.testing.assert_array_equal(trimap, utilities["segmap_trimap_out"])
