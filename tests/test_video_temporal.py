"""dtSSD (p3m.evaluation.temporal) against hand-computed values, and the motion-compensated
smoothing (p3m.video.temporal): less flicker, no drag behind motion, and its inference hooks."""

from __future__ import annotations

import numpy as np
import pytest

from p3m.errors import ShapeMismatchError
from p3m.evaluation.metrics import sad_mse_mad
from p3m.evaluation.temporal import dtssd, dtssd_frame, evaluate_alpha_sequence
from p3m.video.temporal import MotionCompensatedSmoother, TemporalConfig
from video_clips import BrightIsPerson

# --------------------------------------------------------------------------- dtSSD


def test_dtssd_matches_hand_computed_values() -> None:
    pred = [
        np.zeros((2, 2)),
        np.array([[1.0, 0.0], [0.0, 0.5]]),
        np.array([[1.0, 0.0], [0.0, 0.5]]),
    ]
    gt = [np.zeros((2, 2)), np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.2], [0.0, 0.0]])]
    # t=1: changes differ by 0.5 in one of 4 pixels: 100 * sqrt(0.25 / 4) = 25.
    assert dtssd_frame(pred[1], pred[0], gt[1], gt[0]) == pytest.approx(25.0)
    # t=2: the prediction stays, the truth moves by 0.2 in one pixel: 100 * sqrt(0.04 / 4) = 10.
    assert dtssd_frame(pred[2], pred[1], gt[2], gt[1]) == pytest.approx(10.0)
    assert dtssd(pred, gt) == pytest.approx(17.5)
    # 8-bit mattes are read as value / 255.
    as_u8 = [np.round(p * 255).astype(np.uint8) for p in pred]  # 0.5 -> 128 -> 128/255
    assert dtssd(as_u8, gt) == pytest.approx((100 * (128 / 255) / 2 + 10.0) / 2)


def test_dtssd_ignores_a_constant_error_and_punishes_flicker() -> None:
    rng = np.random.default_rng(0)
    gt = [rng.random((8, 8)) for _ in range(5)]
    assert dtssd([g + 0.1 for g in gt], gt) == pytest.approx(0.0, abs=1e-9)
    flicker = [g + (0.1 if i % 2 else -0.1) for i, g in enumerate(gt)]
    assert dtssd(flicker, gt) == pytest.approx(20.0)  # the error jumps by 0.2 every frame


def test_sequence_evaluation_rows_and_errors() -> None:
    rng = np.random.default_rng(1)
    gt = [rng.random((6, 7)).astype(np.float32) for _ in range(3)]
    pred = [np.clip(g + rng.normal(0, 0.05, g.shape), 0, 1).astype(np.float32) for g in gt]
    evaluation = evaluate_alpha_sequence(iter(pred), iter(gt))
    assert evaluation.frames == 3 and evaluation.rows[0]["dtssd"] is None
    assert evaluation.rows[2]["sad"] == pytest.approx(sad_mse_mad(pred[2], gt[2])[0])
    assert evaluation.means["dtssd"] == pytest.approx(
        np.mean([dtssd_frame(pred[t], pred[t - 1], gt[t], gt[t - 1]) for t in (1, 2)])
    )
    with pytest.raises(ShapeMismatchError, match="more frames"):
        evaluate_alpha_sequence(pred, gt[:2])
    with pytest.raises(ShapeMismatchError, match="differ in size"):
        evaluate_alpha_sequence(pred, [g[:5] for g in gt])
    with pytest.raises(ValueError, match="at least two frames"):
        dtssd(pred[:1], gt[:1])


# --------------------------------------------------------------------------- smoothing


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(30, 220, (height // 6 + 2, width // 6 + 2, 3)).astype(np.float32)
    import cv2

    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def moving_disc_clip(frames: int = 24, speed: float = 2.0, height: int = 72, width: int = 112):
    """A soft-edged disc sliding over a background panning the other way: (images, alphas)."""
    background = _texture(height, width + 4 * frames)
    foreground = _texture(height, width, seed=5) * 0.5 + 100
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    images, alphas = [], []
    for t in range(frames):
        radius = np.hypot(xx - 30 - speed * t, yy - height / 2)
        alpha = np.clip((20 - radius) / 3 + 0.5, 0, 1).astype(np.float32)
        back = background[:, 2 * frames - 2 * t : 2 * frames - 2 * t + width]
        image = alpha[:, :, None] * foreground + (1 - alpha[:, :, None]) * back
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        alphas.append(alpha)
    return images, alphas


def test_flicker_filter_lowers_dtssd_without_costing_sad() -> None:
    images, truth = moving_disc_clip()
    rng = np.random.default_rng(3)
    # Per-frame matting error: noise in the soft band, the edge jittering by half a pixel.
    predictions = []
    for alpha in truth:
        step = float(rng.choice([-0.5, 0.0, 0.5]))
        shifted = (1 - abs(step)) * alpha + abs(step) * np.roll(alpha, int(np.sign(step)), axis=1)
        band = (alpha > 0) & (alpha < 1)
        noisy = shifted + band * rng.normal(0, 0.06, alpha.shape)
        predictions.append(np.clip(noisy, 0, 1).astype(np.float32))
    smoother = TemporalConfig().alpha_smoother()
    smoothed = [
        np.clip(smoother(image, p), 0, 1) for image, p in zip(images, predictions, strict=True)
    ]
    raw = evaluate_alpha_sequence(predictions, truth).means
    steady = evaluate_alpha_sequence(smoothed, truth).means
    assert steady["dtssd"] < 0.9 * raw["dtssd"], (raw, steady)
    assert steady["sad"] <= 1.05 * raw["sad"], (raw, steady)


def test_no_drag_behind_fast_motion() -> None:
    # Perfect per-frame mattes of a disc moving 6 px per frame: smoothing must leave them be.
    images, truth = moving_disc_clip(frames=12, speed=6.0)
    smoother = TemporalConfig(alpha_strength=0.9).alpha_smoother()
    for image, alpha in zip(images, truth, strict=True):
        out = smoother(image, alpha)
        assert np.abs(out - alpha).max() < 0.12
        assert np.abs(out - alpha).mean() < 0.002
    assert smoother.last_weight > 0.3  # it did average the still-consistent pixels


def test_scene_cut_drops_the_past_and_shapes_are_checked() -> None:
    smoother = MotionCompensatedSmoother(0.9)
    first = np.full((40, 50, 3), 20, np.uint8)
    smoother(first, np.zeros((3, 40, 50), np.float32))
    cut = np.full((40, 50, 3), 230, np.uint8)
    values = np.random.default_rng(0).random((3, 40, 50)).astype(np.float32)
    assert np.array_equal(smoother(cut, values), values) and smoother.last_weight == 0.0
    with pytest.raises(ValueError, match="H x W"):
        smoother(cut, np.zeros((41, 50), np.float32))
    with pytest.raises(ValueError):
        TemporalConfig(alpha_strength=1.0)


# --------------------------------------------------------------------------- inference hooks


@pytest.mark.parametrize("strategy", ["hybrid", "resize"])
def test_p3mnet_global_filter_hook(strategy: str) -> None:
    from p3m.inference.strategies import predict_p3mnet

    rng = np.random.default_rng(0)
    image = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    model = BrightIsPerson().eval()
    official = predict_p3mnet(model, image, strategy)
    seen = []

    def identity(small: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        seen.append((small.dtype, small.shape, probabilities.shape))
        return probabilities

    same = predict_p3mnet(model, image, strategy, global_filter=identity)
    assert np.array_equal(same.trimap, official.trimap)
    np.testing.assert_allclose(same.alpha, official.alpha, atol=1e-6)
    assert seen[0][0] == np.uint8 and seen[0][2][0] == 3 and seen[0][1][:2] == seen[0][2][1:]

    def everything_foreground(small: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        forced = np.zeros_like(probabilities)
        forced[2] = 1
        return forced

    forced = predict_p3mnet(model, image, strategy, global_filter=everything_foreground)
    assert forced.alpha.min() == 1.0


def test_selfie_cf_mask_filter_hook() -> None:
    from skimage import data

    from p3m.inference.api import Matter

    image = np.ascontiguousarray(data.astronaut()[::4, ::4])
    matter = Matter("selfie-cf")
    plain = matter(image, foreground=False)
    same = matter(image, foreground=False, segmentation_filter=lambda small, mask: mask)
    np.testing.assert_array_equal(same.alpha, plain.alpha)
    # A filter that removes the person leaves nothing to matte: an empty matte, not an error.
    nobody = matter(image, foreground=False, segmentation_filter=lambda small, mask: mask * 0)
    assert nobody.alpha.max() == 0.0
