"""A small synthetic portrait-matting data set in the P3M-10k layout, for tests and CPU smoke runs.

Each sample is a portrait-like figure (head, neck, shoulders, hair with soft, hair-like strands)
composited over a varied background. The face region is obfuscated (Gaussian-blurred) in the
privacy-preserving ("P", `blurred_image`) version and intact in the normal ("NP",
`original_image`) one. Written: train/{blurred_image, original_image, mask, fg, bg, facemask},
validation/P3M-500-P/{blurred_image, mask, trimap, facemask, original_image},
validation/P3M-500-NP/{original_image, mask, trimap} and RWP-636/{image, alpha}.

    >>> summary = write_synthetic_dataset("synthetic", n_train=32, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np

from p3m.data.trimap import trimap_from_alpha

__all__ = ["SyntheticPortrait", "make_portrait", "write_synthetic_dataset"]

SUPERSAMPLE = 4


@dataclass(frozen=True)
class SyntheticPortrait:
    """One synthetic sample: uint8 arrays at the same H x W."""

    image: np.ndarray  # RGB, intact face (the NP version)
    blurred_image: np.ndarray  # RGB, face obfuscated (the P version)
    alpha: np.ndarray  # 0..255
    foreground: np.ndarray  # RGB
    background: np.ndarray  # RGB
    facemask: np.ndarray  # {0, 255}


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=3).astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # linear gradient between two colours
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        first, second = _random_colour(rng), _random_colour(rng)
        canvas = first * (1 - t[..., None]) + second * t[..., None]
    elif kind == 1:  # stripes
        period = rng.uniform(8, 40)
        angle = rng.uniform(0, np.pi)
        phase = np.cos(angle) * xx + np.sin(angle) * yy
        t = (np.sin(phase * 2 * np.pi / period) > 0).astype(np.float32)
        canvas = _random_colour(rng) * (1 - t[..., None]) + _random_colour(rng) * t[..., None]
        canvas = cv2.GaussianBlur(canvas, (0, 0), 1.0)
    elif kind == 2:  # blurred random shapes
        canvas = np.empty((height, width, 3), np.float32)
        canvas[:] = _random_colour(rng)
        for _ in range(int(rng.integers(6, 16))):
            colour = tuple(float(c) for c in _random_colour(rng))
            centre = (int(rng.integers(width)), int(rng.integers(height)))
            if rng.random() < 0.5:
                radius = int(rng.integers(8, max(9, width // 4)))
                cv2.circle(canvas, centre, radius, colour, -1)
            else:
                corner = (centre[0] + int(rng.integers(10, 80)), centre[1] + int(rng.integers(10, 80)))
                cv2.rectangle(canvas, centre, corner, colour, -1)
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 4.0))
    else:  # smooth noise "foliage"
        small = rng.uniform(0, 255, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
        canvas = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = canvas + rng.normal(0, 4, size=canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _draw_strands(
    canvas: np.ndarray,
    rng: np.random.Generator,
    centre: tuple[float, float],
    radii: tuple[float, float],
    count: int,
    scale: int,
) -> None:
    """Thin curved strands leaving the top half of the head outline, each with partial opacity."""
    cx, cy = centre
    rx, ry = radii
    for _ in range(count):
        theta = rng.uniform(np.pi * 0.95, np.pi * 2.05)  # upper half (image y grows downwards)
        x = cx + rx * 0.95 * np.cos(theta)
        y = cy + ry * 0.95 * np.sin(theta)
        direction = theta + rng.normal(0, 0.35)
        length = rng.uniform(0.2, 0.7) * rx
        curvature = rng.normal(0, 0.06)
        points = []
        for _ in range(12):
            points.append((x, y))
            direction += curvature
            x += np.cos(direction) * length / 12
            y += np.sin(direction) * length / 12
        opacity = float(rng.uniform(0.35, 1.0))
        thickness = max(1, int(round(rng.uniform(0.3, 1.2) * scale)))
        pts = np.round(np.array(points) * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], False, opacity, thickness, cv2.LINE_AA, shift=4)


def make_portrait(rng: np.random.Generator, height: int, width: int) -> SyntheticPortrait:
    """Draw one portrait-like sample of size height x width."""
    s = SUPERSAMPLE
    big_h, big_w = height * s, width * s
    cx = width * rng.uniform(0.4, 0.6)
    head_rx = width * rng.uniform(0.12, 0.17)
    head_ry = head_rx * rng.uniform(1.15, 1.35)
    cy = height * rng.uniform(0.3, 0.42)

    def scaled(value: float) -> int:
        return int(round(value * s))

    # Body (hard shapes, antialiased by the supersampling) and hair (soft strands).
    body = np.zeros((big_h, big_w), np.float32)
    cv2.ellipse(body, (scaled(cx), scaled(cy)), (scaled(head_rx), scaled(head_ry)), 0, 0, 360, 1.0, -1)
    neck_w = head_rx * 0.55
    cv2.rectangle(body, (scaled(cx - neck_w), scaled(cy)), (scaled(cx + neck_w), scaled(cy + head_ry * 1.6)), 1.0, -1)
    shoulder_y = cy + head_ry * rng.uniform(1.4, 1.7)
    cv2.ellipse(
        body, (scaled(cx + rng.normal(0, 3)), scaled(shoulder_y + height * 0.45)),
        (scaled(width * rng.uniform(0.3, 0.42)), scaled(height * 0.5)), 0, 0, 360, 1.0, -1,
    )
    hair = np.zeros_like(body)
    cv2.ellipse(
        hair, (scaled(cx), scaled(cy - head_ry * 0.12)), (scaled(head_rx * 1.08), scaled(head_ry * 1.0)),
        0, 180, 360, 1.0, -1,
    )
    _draw_strands(hair, rng, (cx * s, cy * s), (head_rx * s * 1.05, head_ry * s), int(rng.integers(60, 140)), s)
    hair = cv2.GaussianBlur(hair, (0, 0), 0.6 * s)
    alpha_big = np.clip(np.maximum(body, hair), 0.0, 1.0)
    alpha = cv2.resize(alpha_big, (width, height), interpolation=cv2.INTER_AREA)
    alpha_u8 = np.clip(np.round(alpha * 255), 0, 255).astype(np.uint8)

    # Foreground colours everywhere (hair colour outside the figure, as a matting fg would extend).
    hair_colour = _random_colour(rng, 10, 200)
    skin = np.array([rng.uniform(120, 240), rng.uniform(80, 190), rng.uniform(60, 160)], np.float32)
    clothes = _random_colour(rng)
    foreground = np.empty((height, width, 3), np.float32)
    foreground[:] = hair_colour
    foreground += rng.normal(0, 12, size=foreground.shape).astype(np.float32)
    body_small = cv2.resize(body, (width, height), interpolation=cv2.INTER_AREA)
    hair_small = cv2.resize(hair, (width, height), interpolation=cv2.INTER_AREA)
    clothes_mask = np.zeros((height, width), np.float32)
    cv2.ellipse(clothes_mask, (int(cx), int(shoulder_y + height * 0.45)), (width, int(height * 0.5)), 0, 0, 360, 1.0, -1)
    clothes_mask *= (np.arange(height)[:, None] > shoulder_y - 2).astype(np.float32)
    skin_mask = np.clip(body_small - clothes_mask, 0, 1) * (1 - np.clip(hair_small * 1.5, 0, 1))
    foreground = foreground * (1 - skin_mask[..., None]) + skin * skin_mask[..., None]
    stripes = (np.sin(np.arange(width)[None, :] / rng.uniform(2, 6)) * rng.uniform(0, 25)).astype(np.float32)
    clothes_colour = clothes + stripes[..., None]
    foreground = foreground * (1 - clothes_mask[..., None]) + clothes_colour * clothes_mask[..., None]

    # Face details and the face mask (eyes, brows, nose, mouth inside an inner ellipse).
    facemask = np.zeros((height, width), np.uint8)
    face_centre = (int(round(cx)), int(round(cy + head_ry * 0.1)))
    cv2.ellipse(facemask, face_centre, (int(head_rx * 0.85), int(head_ry * 0.8)), 0, 0, 360, 255, -1)
    eye_dx, eye_y = head_rx * 0.38, cy - head_ry * 0.05
    for sign in (-1, 1):
        eye = (int(cx + sign * eye_dx), int(eye_y))
        cv2.ellipse(foreground, eye, (max(2, int(head_rx * 0.16)), max(1, int(head_rx * 0.08))), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(foreground, eye, max(1, int(head_rx * 0.06)), (30, 20, 10), -1)
        cv2.line(foreground, (eye[0] - int(head_rx * 0.15), eye[1] - int(head_rx * 0.2)),
                 (eye[0] + int(head_rx * 0.15), eye[1] - int(head_rx * 0.22)), tuple(float(c) * 0.5 for c in hair_colour), 2)
    cv2.line(foreground, (int(cx), int(cy)), (int(cx - head_rx * 0.08), int(cy + head_ry * 0.3)), tuple(float(c) * 0.8 for c in skin), 2)
    cv2.ellipse(foreground, (int(cx), int(cy + head_ry * 0.5)), (max(2, int(head_rx * 0.3)), max(1, int(head_rx * 0.08))),
                0, 0, 360, (150, 40, 50), -1)
    foreground_u8 = np.clip(foreground, 0, 255).astype(np.uint8)

    background = _background(rng, height, width)
    a = alpha_u8.astype(np.float32)[..., None] / 255.0
    image = np.clip(np.round(a * foreground_u8 + (1 - a) * background), 0, 255).astype(np.uint8)

    # Obfuscation: a strong Gaussian blur inside the (softened) face mask.
    sigma = max(2.0, head_rx * 0.35)
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    blend = cv2.GaussianBlur(facemask.astype(np.float32) / 255.0, (0, 0), 1.5)[..., None]
    blurred_image = np.clip(np.round(blend * blurred + (1 - blend) * image), 0, 255).astype(np.uint8)
    return SyntheticPortrait(image, blurred_image, alpha_u8, foreground_u8, background, facemask)


def _size(rng: np.random.Generator, min_size: int, max_size: int) -> tuple[int, int]:
    return int(rng.integers(min_size, max_size + 1)), int(rng.integers(min_size, max_size + 1))


def write_synthetic_dataset(
    out: str | PathLike[str],
    n_train: int = 32,
    n_val: int | None = None,
    seed: int = 0,
    min_size: int = 256,
    max_size: int = 320,
    trimap_kernel: int = 9,
) -> dict[str, int]:
    """Write the synthetic set under `out`; returns the number of samples per set.

    P3M-500-P also gets `original_image/`, the normal (unobfuscated) version of its images,
    which the public P3M-10k does not ship: the studies comparing blurred and normal faces
    (`p3m experiment baselines --normal-images`, `obfuscation --normal-images`) use it.
    Validation trimaps are made from the mask with `trimap_kernel`. Files are PNG (lossless), so
    the P and NP versions differ only inside the face.
    """
    from p3m.io import write_png

    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train}")
    if not 64 <= min_size <= max_size:
        raise ValueError(f"need 64 <= min_size <= max_size, got {min_size}, {max_size}")
    n_val = max(2, n_train // 4) if n_val is None else n_val
    out = Path(out)
    rng = np.random.default_rng(seed)

    def write(folder: Path, name: str, array: np.ndarray) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_png(folder / f"{name}.png", array)

    train = out / "train"
    for i in range(n_train):
        name = f"synth_train_{i:04d}"
        p = make_portrait(rng, *_size(rng, min_size, max_size))
        write(train / "blurred_image", name, p.blurred_image)
        write(train / "original_image", name, p.image)
        write(train / "mask", name, p.alpha)
        write(train / "fg", name, p.foreground)
        write(train / "bg", name, p.background)
        write(train / "facemask", name, p.facemask)
    private = out / "validation" / "P3M-500-P"
    normal = out / "validation" / "P3M-500-NP"
    rwp = out / "RWP-636"
    for i in range(n_val):
        name = f"synth_p_{i:04d}"
        p = make_portrait(rng, *_size(rng, min_size, max_size))
        write(private / "blurred_image", name, p.blurred_image)
        write(private / "original_image", name, p.image)
        write(private / "mask", name, p.alpha)
        write(private / "trimap", name, trimap_from_alpha(p.alpha, trimap_kernel))
        write(private / "facemask", name, p.facemask)
        name = f"synth_np_{i:04d}"
        p = make_portrait(rng, *_size(rng, min_size, max_size))
        write(normal / "original_image", name, p.image)
        write(normal / "mask", name, p.alpha)
        write(normal / "trimap", name, trimap_from_alpha(p.alpha, trimap_kernel))
        name = f"synth_rwp_{i:04d}"
        p = make_portrait(rng, *_size(rng, min_size, max_size))
        write(rwp / "image", name, p.image)
        write(rwp / "alpha", name, p.alpha)
    return {"train": n_train, "P3M-500-P": n_val, "P3M-500-NP": n_val, "RWP": n_val}
