"""Synthetic group photos and posed faces for measuring anonymisation, built from package photos.

No personal photos: the faces are scikit-image's `data.lfw_subset()` face crops (its first 100
images, 25 x 25 grey, forehead to chin) and the astronaut (`data.astronaut()`, a NASA portrait in
the public domain); the backgrounds are scikit-image's coffee and rocket photos.

* `group_photo` pastes faces at widths of 16-200 px (log-uniform), flipped, tinted, rolled by up
  to 25 degrees, some turned by a quarter or half turn, some cut by the image border, blended
  into the background with a feathered edge. Each face's true box is known (`TrueFace`).
* `group_photos` makes a set of such photos with at least `faces` face instances (tests and
  `benchmarks/bench_anonymize.py` share it), and `recall_by_size` scores detections against it.
* `posed_astronaut` warps the astronaut to simulate a head tilted back, turned, or rotated by
  90 / 180 degrees, and returns the warp so that landmarks found on the original can be carried
  over as ground truth. These are 2-D warps of a photo, not renderings of a turned 3-D head: they
  move the features where a turned head would put them, without self-occlusion.

    >>> photos = group_photos(faces=200, seed=0)
    >>> table = recall_by_size(photos, [detect_faces(p.image) for p in photos])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "ASTRONAUT_FACE_BOX",
    "POSES",
    "SIZE_BINS",
    "GroupPhoto",
    "PosedImage",
    "TrueFace",
    "face_matches",
    "group_photo",
    "group_photos",
    "posed_astronaut",
    "recall_by_size",
]

# The astronaut's face (brows to chin, ear to ear) in data.astronaut(), read off the photo.
ASTRONAUT_FACE_BOX = (180.0, 75.0, 268.0, 182.0)
SIZE_BINS: tuple[tuple[float, float], ...] = ((16, 24), (24, 32), (32, 48), (48, 96), (96, 201))
POSES: tuple[str, ...] = ("tilted_back", "turned_60", "rotated_90", "rotated_180")
_FEATHER = 0.25  # context band around each pasted face, as a fraction of its width
_SKIN_TONES = np.array(
    [[1.0, 1.0, 1.0], [1.0, 0.84, 0.72], [0.93, 0.72, 0.58], [0.72, 0.52, 0.40]], np.float32
)


@dataclass(frozen=True)
class TrueFace:
    """A pasted face: its true box (x0, y0, x1, y1; may reach outside the image when `cut`),
    its width in pixels before any roll, and how it was transformed."""

    box: tuple[float, float, float, float]
    size: float
    source: str
    quarter_turns: int = 0  # counter-clockwise, as np.rot90
    roll: float = 0.0  # degrees, counter-clockwise
    flipped: bool = False
    cut: bool = False


@dataclass(frozen=True)
class GroupPhoto:
    """An RGB uint8 H x W x 3 image and the faces pasted into it."""

    image: np.ndarray
    faces: tuple[TrueFace, ...]


@functools.cache
def _sources() -> tuple[tuple[np.ndarray, tuple[float, float, float, float], str], ...]:
    """(RGB crop float32 0..255, face box in the crop, name) of every face source."""
    from skimage import data

    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    sources = [
        (np.repeat(face[:, :, None] * 255, 3, axis=2).astype(np.float32), (0.0, 0.0, 25.0, 25.0), f"lfw:{i}")
        for i, face in enumerate(faces)
    ]  # fmt: skip
    x0, y0, x1, y1 = ASTRONAUT_FACE_BOX
    pad = 0.3 * (x1 - x0)
    cx0, cy0 = int(x0 - pad), int(y0 - pad)
    crop = data.astronaut()[cy0 : int(y1 + pad), cx0 : int(x1 + pad)].astype(np.float32)
    sources.append((crop, (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0), "astronaut"))
    return tuple(sources)


@functools.cache
def _backgrounds() -> tuple[np.ndarray, ...]:
    from skimage import data

    return (data.coffee(), data.rocket())


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    photo = _backgrounds()[int(rng.integers(len(_backgrounds())))]
    scale = max(height / photo.shape[0], width / photo.shape[1]) * rng.uniform(1.0, 1.6)
    resized = cv2.resize(
        photo,
        (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    y = int(rng.integers(resized.shape[0] - height + 1))
    x = int(rng.integers(resized.shape[1] - width + 1))
    canvas = resized[y : y + height, x : x + width]
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
    return np.ascontiguousarray(canvas).astype(np.float32)


def _face_patch(
    rng: np.random.Generator, width: float, quarter_turns: int, roll: float, use_astronaut: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]:
    """Patch (float32 RGB), its blending weight (float32 0..1), the face's corner points in the
    patch (4 x 2) and the source name."""
    sources = _sources()
    crop, box, name = sources[-1] if use_astronaut else sources[int(rng.integers(len(sources) - 1))]
    if name != "astronaut":
        crop = crop * _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))]
    flipped = bool(rng.random() < 0.5)
    if flipped:
        crop = crop[:, ::-1]
        box = (crop.shape[1] - box[2], box[1], crop.shape[1] - box[0], box[3])
    scale = width / (box[2] - box[0])
    # Context around the face: the crop's own, then its edge repeated, feathered to nothing.
    band = _FEATHER * (box[2] - box[0])
    pad = [max(0, math.ceil(band - v)) for v in (box[1], crop.shape[0] - box[3], box[0], crop.shape[1] - box[2])]
    padded = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_REPLICATE)  # fmt: skip
    box = (box[0] + pad[2], box[1] + pad[0], box[2] + pad[2], box[3] + pad[0])
    out_w = max(4, round(padded.shape[1] * scale))
    out_h = max(4, round(padded.shape[0] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    patch = cv2.resize(padded, (out_w, out_h), interpolation=interpolation)
    sx, sy = out_w / padded.shape[1], out_h / padded.shape[0]
    fx0, fy0, fx1, fy1 = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    # Weight 1 on the face box, falling to 0 across the context band.
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32) + 0.5
    distance = np.maximum(np.maximum(fx0 - xx, xx - fx1), np.maximum(fy0 - yy, yy - fy1))
    weight = np.clip(1 - distance / max(band * scale, 1.0), 0, 1).astype(np.float32)
    corners = np.array([[fx0, fy0], [fx1, fy0], [fx1, fy1], [fx0, fy1]], np.float32)
    # Roll about the face centre, then quarter turns, both on patch, weight and corners.
    diagonal = math.ceil(math.hypot(out_w, out_h))
    centre = ((fx0 + fx1) / 2, (fy0 + fy1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, roll, 1.0)
    matrix[:, 2] += (diagonal / 2 - centre[0], diagonal / 2 - centre[1])
    patch = cv2.warpAffine(patch, matrix, (diagonal, diagonal), flags=cv2.INTER_LINEAR)
    weight = cv2.warpAffine(weight, matrix, (diagonal, diagonal), flags=cv2.INTER_LINEAR)
    corners = corners @ matrix[:, :2].T + matrix[:, 2]
    for _ in range(quarter_turns % 4):
        side = patch.shape[1]
        patch, weight = np.rot90(patch), np.rot90(weight)
        corners = np.stack([corners[:, 1], side - corners[:, 0]], axis=1)
    return np.ascontiguousarray(patch), np.ascontiguousarray(weight), corners, name, flipped


def group_photo(
    rng: np.random.Generator | int,
    shape: tuple[int, int] = (480, 640),
    faces: int = 10,
    size_range: tuple[float, float] = (16.0, 200.0),
    turned_fraction: float = 0.1,
    cut_fraction: float = 0.12,
    max_roll: float = 25.0,
    astronaut_fraction: float = 0.25,
) -> GroupPhoto:
    """A photo of `faces` faces (fewer if they do not fit) pasted on a coffee/rocket background.

    Widths are log-uniform in `size_range` px; `turned_fraction` of the faces are turned by a
    quarter or half turn (heads at 90/180/270 degrees), the others rolled by up to `max_roll`
    degrees; `cut_fraction` are placed across the border with 15-45 % of the face outside;
    `astronaut_fraction` of the faces wider than 48 px are the astronaut (the LFW crops are
    25 px: enlarged, they are blurry). Faces do not overlap.
    """
    rng = np.random.default_rng(rng)
    height, width = shape
    canvas = _background(rng, height, width)
    occupied: list[tuple[float, float, float, float]] = []
    placed: list[TrueFace] = []
    low, high = math.log(size_range[0]), math.log(min(size_range[1], 0.45 * min(shape)))
    for _ in range(faces):
        size = float(math.exp(rng.uniform(low, high)))
        turns = int(rng.choice([1, 2, 3])) if rng.random() < turned_fraction else 0
        roll = 0.0 if turns else float(rng.uniform(-max_roll, max_roll))
        use_astronaut = size > 48 and rng.random() < astronaut_fraction
        patch, weight, corners, name, flipped = _face_patch(rng, size, turns, roll, use_astronaut)
        ph, pw = weight.shape
        fx0, fy0 = corners.min(axis=0)
        fx1, fy1 = corners.max(axis=0)
        fw, fh = fx1 - fx0, fy1 - fy0
        cut = bool(rng.random() < cut_fraction)
        for _attempt in range(40):
            if cut:  # 15-45 % of the face box beyond one border
                outside = rng.uniform(0.15, 0.45)
                side = int(rng.integers(4))
                ox = rng.uniform(0, width - fw) if side < 2 else (
                    -outside * fw if side == 2 else width - (1 - outside) * fw)  # fmt: skip
                oy = rng.uniform(0, height - fh) if side >= 2 else (
                    -outside * fh if side == 0 else height - (1 - outside) * fh)  # fmt: skip
            else:
                ox, oy = rng.uniform(0, width - fw), rng.uniform(0, height - fh)
            box = (float(ox), float(oy), float(ox + fw), float(oy + fh))
            margin = 0.3 * max(fw, fh)
            if all(
                box[0] - margin > o[2] or o[0] > box[2] + margin or box[1] - margin > o[3] or o[1] > box[3] + margin
                for o in occupied
            ):  # fmt: skip
                break
        else:
            continue
        px, py = round(ox - fx0), round(oy - fy0)
        box = (float(px + fx0), float(py + fy0), float(px + fx1), float(py + fy1))
        # Paste the part of the patch that lands on the canvas.
        x0, y0 = max(0, px), max(0, py)
        x1, y1 = min(width, px + pw), min(height, py + ph)
        if x1 <= x0 or y1 <= y0:
            continue
        w = weight[y0 - py : y1 - py, x0 - px : x1 - px, None]
        region = canvas[y0:y1, x0:x1]
        region[:] = region * (1 - w) + patch[y0 - py : y1 - py, x0 - px : x1 - px] * w
        occupied.append(box)
        placed.append(TrueFace(box, round(size, 2), name, turns, round(roll, 2), flipped, cut))
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return GroupPhoto(image, tuple(placed))


def group_photos(
    faces: int = 200,
    seed: int = 0,
    shape: tuple[int, int] = (480, 640),
    per_photo: int = 10,
    **options: float,
) -> list[GroupPhoto]:
    """Group photos (see `group_photo`) until at least `faces` faces are placed; deterministic."""
    rng = np.random.default_rng(seed)
    photos: list[GroupPhoto] = []
    count = 0
    while count < faces:
        photo = group_photo(rng, shape, per_photo, **options)
        photos.append(photo)
        count += len(photo.faces)
    return photos


def _clipped(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    return (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))


def face_matches(truth: Sequence[float], found: Sequence[float], shape: tuple[int, ...]) -> bool:
    """Whether a detected box is the true face: each box's centre lies inside the other box.

    Both boxes are first clipped to the image (a cut face is matched by its visible part).
    Mutual centre containment tolerates the detectors' different box conventions (forehead in
    or out) while a neighbour's box or a box twice too large does not match.
    """
    height, width = shape[:2]
    a, b = _clipped(truth, width, height), _clipped(found, width, height)
    acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return a[0] <= bcx <= a[2] and a[1] <= bcy <= a[3] and b[0] <= acx <= b[2] and b[1] <= acy <= b[3]


def recall_by_size(
    photos: Sequence[GroupPhoto],
    detections: Sequence[Sequence[Sequence[float]]],
    bins: Sequence[tuple[float, float]] = SIZE_BINS,
) -> dict[str, dict[str, float]]:
    """Recall per face-width bin: {"16-24": {"faces": n, "found": k, "recall": k / n}, ...}.

    `detections[i]` are the boxes (x0, y0, x1, y1) found in `photos[i]` (or objects with a
    `.box`). Also "all" and ">=24" rows.
    """
    rows: dict[str, list[int]] = {f"{lo:g}-{hi:g}": [0, 0] for lo, hi in bins}
    rows[">=24"] = [0, 0]
    rows["all"] = [0, 0]
    for photo, found in zip(photos, detections, strict=True):
        boxes = [getattr(item, "box", item) for item in found]
        for face in photo.faces:
            hit = int(any(face_matches(face.box, box, photo.image.shape) for box in boxes))
            keys = ["all"] + [f"{lo:g}-{hi:g}" for lo, hi in bins if lo <= face.size < hi]
            if face.size >= 24:
                keys.append(">=24")
            for key in keys:
                rows[key][0] += 1
                rows[key][1] += hit
    return {
        key: {"faces": n, "found": k, "recall": (k / n) if n else float("nan")}
        for key, (n, k) in rows.items()
    }


# ----------------------------------------------------------------------------- posed astronaut


@dataclass(frozen=True)
class PosedImage:
    """A warped photo and the 3 x 3 homography taking original pixel coordinates into it."""

    image: np.ndarray
    homography: np.ndarray
    pose: str

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Carry N x 2 (x, y) points of the original photo into this one."""
        points = np.asarray(points, np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(points, self.homography).reshape(-1, 2).astype(np.float32)


def _homography_from_face(
    face: tuple[float, float, float, float], moved: np.ndarray
) -> np.ndarray:
    x0, y0, x1, y1 = face
    source = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    return cv2.getPerspectiveTransform(source, np.float32(moved))


def posed_astronaut(pose: str) -> PosedImage:
    """The astronaut with the head warped into `pose` (one of `POSES`); 512 x 512 RGB uint8.

    * tilted_back: seen from below: the forehead recedes (its edge shortened to 60 % and
      lowered), the chin and jaw come forward and widen;
    * turned_60: yaw of about 60 degrees: the far half-face is foreshortened to cos 60 = 0.5
      and its edge shortened by perspective;
    * rotated_90 / rotated_180: the whole photo turned counter-clockwise.
    """
    from skimage import data

    image = data.astronaut()
    height, width = image.shape[:2]
    if pose in ("rotated_90", "rotated_180"):
        turns = 1 if pose == "rotated_90" else 2
        rotated = np.ascontiguousarray(np.rot90(image, turns))
        if turns == 1:  # (x, y) -> (y, W - 1 - x)
            homography = np.array([[0, 1, 0], [-1, 0, width - 1], [0, 0, 1]], np.float64)
        else:  # (x, y) -> (W - 1 - x, H - 1 - y)
            homography = np.array([[-1, 0, width - 1], [0, -1, height - 1], [0, 0, 1]], np.float64)
        return PosedImage(rotated, homography, pose)
    x0, y0, x1, y1 = ASTRONAUT_FACE_BOX
    w, h = x1 - x0, y1 - y0
    if pose == "tilted_back":
        moved = np.array([
            [x0 + 0.2 * w, y0 + 0.25 * h], [x1 - 0.2 * w, y0 + 0.25 * h],
            [x1 + 0.05 * w, y1 + 0.05 * h], [x0 - 0.05 * w, y1 + 0.05 * h],
        ])  # fmt: skip
    elif pose == "turned_60":
        moved = np.array([
            [x0 + 0.4 * w, y0 + 0.12 * h], [x1, y0],
            [x1, y1], [x0 + 0.4 * w, y1 - 0.12 * h],
        ])  # fmt: skip
    else:
        raise ValueError(f"unknown pose {pose!r}; choose from {', '.join(POSES)}")
    homography = _homography_from_face(ASTRONAUT_FACE_BOX, moved)
    return PosedImage(_local_warp(image, homography, moved), homography, pose)


def _local_warp(image: np.ndarray, homography: np.ndarray, face: np.ndarray) -> np.ndarray:
    """`image` warped by `homography` around the (warped) face quad, unchanged far from it.

    Each output pixel samples the original at w * H^-1(p) + (1 - w) * p, where w is 1 within
    0.3 face widths of the warped face's box and falls smoothly to 0 a further 0.7 widths out:
    the face is exactly the homography's image, the rest of the photo stays as it was.
    """
    height, width = image.shape[:2]
    x0, y0 = face.min(axis=0)
    x1, y1 = face.max(axis=0)
    size = max(x1 - x0, y1 - y0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    distance = np.maximum(np.maximum(x0 - xx, xx - x1), np.maximum(y0 - yy, yy - y1))
    t = np.clip((distance - 0.3 * size) / (0.7 * size), 0, 1)
    weight = 1 - t * t * (3 - 2 * t)  # smoothstep: no kink where the warp fades out
    points = np.stack([xx, yy], axis=2).reshape(-1, 1, 2)
    back = cv2.perspectiveTransform(points, np.linalg.inv(homography)).reshape(height, width, 2)
    # Far from the face the homography runs away (towards its horizon): cap the displacement.
    shift = back - np.stack([xx, yy], axis=2)
    length = np.linalg.norm(shift, axis=2, keepdims=True)
    shift *= np.minimum(1.0, 0.6 * size / np.maximum(length, 1e-9))
    map_x = (xx + weight * shift[:, :, 0]).astype(np.float32)
    map_y = (yy + weight * shift[:, :, 1]).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
