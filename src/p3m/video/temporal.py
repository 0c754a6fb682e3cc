"""Temporal smoothing of video mattes that follows motion instead of lagging behind it.

Per-frame matting flickers: the segmentation that decides the trimap (selfie-cf's person
probability, P3M-Net's global classes) jitters by a pixel or two from frame to frame, and the
per-frame solve reacts to sensor noise and compression. p3m smooths at two places, both with
the same motion-compensated recursive filter, `MotionCompensatedSmoother`:

* the segmentation, before the trimap is built (the matte is then still solved per frame);
* the alpha matte, as a flicker filter: only small changes are averaged.

For each new frame the filter

1. estimates dense optical flow from the new frame back to the previous one (DIS, Kroeger et
   al., "Fast Optical Flow using Dense Inverse Search", ECCV 2016; OpenCV's implementation),
   at a bounded resolution;
2. warps its running estimate and the previous frame along it, so the past is moved to where
   things are now rather than left where they were;
3. trusts the warped past only where the warped previous frame matches the new one
   (photometric error e, locally averaged): weight w = strength * exp(-(e / sigma)^2), and not
   at all where the flow points outside the frame or after a scene cut; with a
   `value_tolerance` tau, also only where the new value is close to the warped past:
   w *= exp(-((current - past) / tau)^2), so a real change the flow missed is not averaged away;
4. returns w * past + (1 - w) * current, and keeps it as the new running estimate.

Where the flow explains the motion, values are averaged along the motion path (no flicker, no
drag); where it does not (occlusions, a fast edge, a cut), the weight collapses and the current
frame wins. This is recursive motion-compensated temporal filtering as used in video
denoising, applied to segmentation scores and mattes.

    >>> smoother = MotionCompensatedSmoother(strength=0.8, value_tolerance=0.2)
    >>> for image, alpha in frames:                 # RGB uint8 H x W x 3, float H x W (or C x H x W)
    ...     steady = smoother(image, alpha)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["MotionCompensatedSmoother", "TemporalConfig"]

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class TemporalConfig:
    """Temporal smoothing of `p3m.video`; a strength of 0 turns that stage off.

    Defaults were measured on the synthetic clip of `benchmarks/bench_video.py` with selfie-cf
    (H.264-encoded, sensor noise 2 and 8): the alpha flicker filter lowers dtSSD by 5-7 % and
    SAD by up to 2 %; most of the remaining dtSSD there is per-frame error that moves with the
    person, which no temporal filter removes. Segmentation smoothing changed dtSSD by under
    +-0.5 % there (selfie-cf solves a wide band, so its trimap is not what flickers), so it is
    off by default; turn it on (e.g. 0.6) where the segmentation itself jitters.
    """

    segmentation_strength: float = 0.0
    """Largest weight of the past for the segmentation (0.75 ~ a 4-frame average when still)."""
    alpha_strength: float = 0.8
    """Largest weight of the past for the alpha matte."""
    alpha_tolerance: float = 0.2
    """Alpha changes well below this are flicker and averaged; larger ones are kept as they are."""
    photometric_sigma: float = 0.03
    """Luma difference (0..1) after warping at which the past's weight falls to 1/e of it."""
    error_window: int = 5
    """Side (px, at the flow resolution) of the box the photometric error is averaged over."""
    scene_cut: float = 0.2
    """Mean photometric error above which a frame counts as a cut and the past is dropped."""
    flow_preset: str = "fast"
    """DIS optical-flow preset: "ultrafast", "fast" or "medium"."""
    flow_max_side: int = 640
    """Flow and weights are computed with the longer side at most this long, then upsampled."""

    def __post_init__(self) -> None:
        for name in ("segmentation_strength", "alpha_strength"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.photometric_sigma <= 0 or self.alpha_tolerance <= 0:
            raise ValueError("photometric_sigma and alpha_tolerance must be > 0")
        if self.flow_preset not in _PRESETS:
            raise ValueError(
                f"flow_preset must be one of {', '.join(_PRESETS)}, got {self.flow_preset!r}"
            )
        if self.flow_max_side < 32:
            raise ValueError(f"flow_max_side must be at least 32, got {self.flow_max_side}")

    def segmentation_smoother(self) -> MotionCompensatedSmoother | None:
        """The filter for segmentation scores (None when its strength is 0)."""
        if self.segmentation_strength == 0:
            return None
        return self._smoother(self.segmentation_strength, None)

    def alpha_smoother(self) -> MotionCompensatedSmoother | None:
        """The flicker filter for alpha mattes (None when its strength is 0)."""
        if self.alpha_strength == 0:
            return None
        return self._smoother(self.alpha_strength, self.alpha_tolerance)

    def _smoother(self, strength: float, tolerance: float | None) -> MotionCompensatedSmoother:
        return MotionCompensatedSmoother(
            strength=strength,
            value_tolerance=tolerance,
            photometric_sigma=self.photometric_sigma,
            error_window=self.error_window,
            scene_cut=self.scene_cut,
            flow_preset=self.flow_preset,
            flow_max_side=self.flow_max_side,
        )


class MotionCompensatedSmoother:
    """Recursive motion-compensated smoothing of a per-frame map; see the module docstring.

    Call it once per frame, in order, with the frame (RGB uint8 H x W x 3) and its map (float
    H x W, or C x H x W for class probabilities) at the same H x W; it returns the smoothed map
    (float32, same shape). A change of size, or `reset()`, starts afresh. `last_weight` is the
    mean weight given to the past on the last frame (0 on the first), for diagnostics.
    `strength` in [0, 1): the largest weight of the past; `value_tolerance`: see step 3.
    """

    def __init__(
        self,
        strength: float = 0.75,
        *,
        value_tolerance: float | None = None,
        photometric_sigma: float = 0.03,
        error_window: int = 5,
        scene_cut: float = 0.2,
        flow_preset: str = "fast",
        flow_max_side: int = 640,
    ) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        if flow_preset not in _PRESETS:
            raise ValueError(
                f"flow_preset must be one of {', '.join(_PRESETS)}, got {flow_preset!r}"
            )
        self.strength = strength
        self.value_tolerance = value_tolerance
        self.photometric_sigma = photometric_sigma
        self.error_window = max(1, int(error_window))
        self.scene_cut = scene_cut
        self.flow_max_side = int(flow_max_side)
        self._flow = cv2.DISOpticalFlow_create(_PRESETS[flow_preset])
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget the past (call between clips)."""
        self._gray: np.ndarray | None = None
        self._state: np.ndarray | None = None
        self.last_weight = 0.0

    def __call__(self, image: np.ndarray, values: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be RGB uint8 H x W x 3, got {image.dtype} {image.shape}")
        current = np.asarray(values, dtype=np.float32)
        if current.ndim not in (2, 3) or current.shape[-2:] != image.shape[:2]:
            raise ValueError(
                f"values must be H x W or C x H x W with H x W = {image.shape[:2]}, got {current.shape}"
            )
        gray = self._analysis_gray(image)
        with self._lock:
            state = self._state
            if self.strength == 0 or state is None or state.shape != current.shape:
                return self._keep(gray, current.copy(), 0.0)
            warped = self._warp_past(gray, image.shape[:2])
            if warped is None:  # a scene cut
                return self._keep(gray, current.copy(), 0.0)
            past, weight = warped
            if self.value_tolerance:
                change = np.abs(current - past)
                if change.ndim == 3:
                    change = change.max(axis=0)
                weight *= np.exp(-np.square(change / self.value_tolerance))
            if current.ndim == 3:
                weight = weight[None]
            smoothed = current + weight * (past - current)  # w * past + (1 - w) * current
            return self._keep(gray, smoothed.astype(np.float32), float(weight.mean()))

    def _keep(self, gray: np.ndarray, state: np.ndarray, weight: float) -> np.ndarray:
        self._gray, self._state, self.last_weight = gray, state, weight
        return state.copy()

    def _analysis_gray(self, image: np.ndarray) -> np.ndarray:
        """Luma at the flow resolution (longer side at most `flow_max_side`)."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        scale = self.flow_max_side / max(height, width)
        if scale < 1.0:
            size = (max(8, round(width * scale)), max(8, round(height * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def _warp_past(
        self, gray: np.ndarray, size: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The running estimate warped onto this frame, and the per-pixel weight (H x W)."""
        assert self._gray is not None and self._state is not None
        if self._gray.shape != gray.shape:
            return None
        small_h, small_w = gray.shape
        # flow(x) maps a pixel of this frame to where it was in the previous one.
        flow = self._flow.calc(gray, self._gray, None)
        grid_x, grid_y = np.meshgrid(
            np.arange(small_w, dtype=np.float32), np.arange(small_h, dtype=np.float32)
        )
        map_x, map_y = grid_x + flow[:, :, 0], grid_y + flow[:, :, 1]
        warped_gray = cv2.remap(
            self._gray.astype(np.float32),
            map_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        error = np.abs(gray.astype(np.float32) - warped_gray) * np.float32(1 / 255)
        error = cv2.blur(
            error, (self.error_window, self.error_window), borderType=cv2.BORDER_REFLECT
        )
        if float(error.mean()) > self.scene_cut:
            return None
        weight = self.strength * np.exp(-np.square(error / self.photometric_sigma))
        inside = (map_x >= 0) & (map_x <= small_w - 1) & (map_y >= 0) & (map_y <= small_h - 1)
        weight[~inside] = 0.0
        height, width = size
        if (height, width) != (small_h, small_w):
            # Flow vectors scale with the resolution; weights are resampled as they are.
            flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
            flow[:, :, 0] *= width / small_w
            flow[:, :, 1] *= height / small_h
            weight = cv2.resize(weight, (width, height), interpolation=cv2.INTER_LINEAR)
            grid_x, grid_y = np.meshgrid(
                np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
            )
            map_x, map_y = grid_x + flow[:, :, 0], grid_y + flow[:, :, 1]
        state = self._state
        channels = state[None] if state.ndim == 2 else state
        past = np.stack(
            [
                # Bicubic: the running estimate is resampled every frame, and bilinear
                # resampling would blur it a little more each time.
                cv2.remap(channel, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                for channel in channels
            ]
        )
        np.clip(past, float(state.min()), float(state.max()), out=past)  # no cubic overshoot
        if state.ndim == 2:
            past = past[0]
        return past, weight.astype(np.float32)
