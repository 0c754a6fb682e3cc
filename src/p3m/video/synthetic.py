"""A synthetic portrait clip with a known alpha for every frame, for tests and benchmarks.

The portrait is scikit-image's astronaut (a photo shipped by an installed package). Its matte
is computed once with the offline selfie-cf pipeline and its foreground colours estimated
(`p3m.inference.estimate_foreground`); that cut-out then moves sideways, bobs and scales over
a background that pans the other way, and each frame is the exact composite

    image_t = alpha_t * F_t + (1 - alpha_t) * B_t

so `alpha_t` (the warped portrait matte) is the ground truth of frame t by construction,
whatever produced the portrait's matte. The person stays anchored at the bottom edge, as in
a video call.

    >>> clip = SyntheticClip(height=720, width=1280, seconds=10, fps=25)
    >>> for image, alpha in clip.frames():          # RGB uint8 H x W x 3, float32 H x W
    ...     ...
    >>> clip.write("clip.mp4")                       # H.264, CRF 18; ground truth stays in memory
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

__all__ = ["SyntheticClip", "portrait_cutout"]


PORTRAIT_CROP = (slice(0, 336), slice(0, 400))
"""Head and shoulders of the astronaut, above the helmet she holds (rows 0-335, columns 0-399)."""


@functools.cache
def portrait_cutout() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head and shoulders: foreground colours (RGB uint8 336 x 400 x 3) and
    matte (float32 in [0, 1], 8-bit steps).

    The matte comes from selfie-cf on the whole still photo (needs MediaPipe), then both are
    cropped to `PORTRAIT_CROP`; it is the ground truth of the clip because every frame is
    composited from it. The crop's bottom edge stays below the frame, like a torso in a call.
    """
    from skimage import data

    from p3m.inference.foreground import estimate_foreground
    from p3m.inference.selfie_cf import matte_selfie_cf

    image = data.astronaut()
    alpha = np.asarray(matte_selfie_cf(image), dtype=np.float32)
    # Quantise like a matte stored on disk, so a perfect prediction is reachable in 8 bits.
    alpha = np.round(alpha * 255.0).astype(np.float32) / np.float32(255)
    foreground = estimate_foreground(image, alpha)
    return (
        np.ascontiguousarray(foreground[PORTRAIT_CROP]),
        np.ascontiguousarray(alpha[PORTRAIT_CROP]),
    )


def _background(height: int, width: int, seed: int) -> np.ndarray:
    """A room-like RGB uint8 canvas: muted colour fields, furniture-like blocks, fine grain."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(70, 190, size=(max(2, height // 96), max(2, width // 96), 3)).astype(
        np.float32
    )
    canvas = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(max(6, (height * width) // 60_000)):
        colour = rng.uniform(40, 220, size=3)
        colour = tuple(float(c) for c in 0.5 * colour + 0.5 * colour.mean())  # muted
        x, y = int(rng.integers(width)), int(rng.integers(height))
        # Blocks only: pairs of round blobs read as eyes to face detectors (MediaPipe found a
        # "face" in two discs of an earlier version), which would muddle the anonymisation figures.
        w = int(rng.integers(20, max(21, width // 6)))
        h = int(rng.integers(20, max(21, height // 4)))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, -1)
    # Desaturate towards grey: walls and furniture rather than a colour chart.
    grey = canvas.mean(axis=2, keepdims=True)
    canvas = 0.55 * canvas + 0.45 * grey
    canvas = cv2.GaussianBlur(canvas, (0, 0), 2.0)
    canvas += rng.normal(0.0, 4.0, size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticClip:
    """A clip of `seconds` at `fps`, `height` x `width`; see the module docstring.

    `motion` scales the movement (1 = the person crosses about a quarter of the frame width
    and scales by +-12 % within a 4-second cycle); `noise` is the standard deviation of the
    per-frame sensor noise added to the composite (0..255 scale), which is what makes
    per-frame matting flicker.
    """

    height: int = 720
    width: int = 1280
    seconds: float = 10.0
    fps: int = 25
    seed: int = 0
    motion: float = 1.0
    noise: float = 2.0

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))

    @property
    def time_base(self) -> Fraction:
        return Fraction(1, self.fps)

    def _canvas(self) -> np.ndarray:
        return _background(int(self.height * 1.2) + 8, int(self.width * 1.4) + 8, self.seed)

    def _pose(self, index: int) -> tuple[float, float, float]:
        """Scale and top-left position (x, y) of the portrait in frame `index`."""
        t = index / self.fps
        phase = 2 * math.pi * t / 4.0
        rows, columns = (part.stop - part.start for part in PORTRAIT_CROP)
        base = 0.8 * self.height / rows
        scale = base * (1.0 + 0.12 * self.motion * math.sin(phase))
        centre_x = self.width / 2 + 0.13 * self.width * self.motion * math.sin(0.5 * phase + 0.4)
        x = centre_x - columns * scale / 2
        # Anchored below the bottom edge (the torso leaves the frame there), bobbing a little.
        y = (
            self.height
            - rows * scale
            + 0.03 * self.height * (1 + self.motion * math.sin(1.5 * phase))
        )
        return scale, x, y

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(image RGB uint8 H x W x 3, ground-truth alpha float32 H x W) for every frame."""
        foreground, alpha = portrait_cutout()
        foreground_f = foreground.astype(np.float32)
        canvas = self._canvas()
        rng = np.random.default_rng(self.seed + 1)
        margin_y = canvas.shape[0] - self.height
        margin_x = canvas.shape[1] - self.width
        for index in range(self.frame_count):
            t = index / self.fps
            scale, x, y = self._pose(index)
            matrix = np.float32([[scale, 0, x], [0, scale, y]])
            size = (self.width, self.height)
            moved_alpha = cv2.warpAffine(alpha, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0)
            moved_fg = cv2.warpAffine(
                foreground_f, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            # The background pans against the person's motion.
            ox = int(round(margin_x / 2 * (1 - self.motion * math.sin(2 * math.pi * t / 6.0))))
            oy = int(
                round(margin_y / 2 * (1 - 0.5 * self.motion * math.cos(2 * math.pi * t / 5.0)))
            )
            ox, oy = min(max(ox, 0), margin_x), min(max(oy, 0), margin_y)
            background = canvas[oy : oy + self.height, ox : ox + self.width].astype(np.float32)
            weight = np.clip(moved_alpha, 0.0, 1.0)[:, :, None]
            image = background + weight * (moved_fg - background)
            if self.noise > 0:
                image += rng.normal(0.0, self.noise, size=image.shape).astype(np.float32)
            image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
            yield image, np.clip(moved_alpha, 0.0, 1.0).astype(np.float32)

    def alphas(self) -> Iterator[np.ndarray]:
        """The ground-truth mattes only (float32 H x W), frame by frame."""
        for _, alpha in self.frames():
            yield alpha

    def write(self, path: str | os.PathLike[str], video_format: str = "mp4") -> Path:
        """Encode the clip's images (H.264 MP4 by default) and return the path."""
        from p3m.video.writer import VideoWriter

        with VideoWriter(
            path,
            video_format,
            "rgb",
            width=self.width,
            height=self.height,
            time_base=self.time_base,
            frame_rate=Fraction(self.fps),
        ) as writer:
            for index, (image, _) in enumerate(self.frames()):
                writer.write(image, index)
        return Path(path)
