"""The heat-map sheet of the sensitivity study: where each face obfuscation moved the matte.

One PNG per image, two rows of tiles: the input (face mask outlined) and each obfuscated input
above; the model's matte of the input and, for each obfuscation, |Δα| (the absolute change of
the matte) in a fixed colour scale below, the face mask outlined in white and the hair /
transition band in green. A colour bar at the bottom gives the scale (|Δα| at or above `vmax`
saturates), the same for every image so that sheets compare.

    >>> sheet = heatmap_sheet(image, alpha, [blurred, masked], [change_blur, change_mask],
    ...                       ["Blur x1", "Mask"], facemask, band)            # RGB uint8
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["DEFAULT_VMAX", "colourize", "heatmap_sheet"]

DEFAULT_VMAX = 0.25
"""|Δα| at which the colour scale saturates."""

_HEADER = 20  # px of label strip above each tile
_GAP = 4
_FACE_COLOUR = (255, 255, 255)
_BAND_COLOUR = (60, 220, 60)


def colourize(change: np.ndarray, vmax: float = DEFAULT_VMAX) -> np.ndarray:
    """|Δα| (float H x W, 0..1) -> RGB uint8 with the inferno colour map, 0..vmax."""
    scaled = np.clip(np.asarray(change, np.float32) / np.float32(vmax), 0, 1)
    bgr = cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _fit(tile: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """`tile` at `size` (height, width), always a new array: outlines are drawn into it, never
    into the caller's image (a read-only one, as decoded images can be, made cv2 fail)."""
    height, width = size
    if tile.shape[:2] == (height, width):
        return np.array(tile, copy=True)
    shrinking = tile.shape[0] > height
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(tile, (width, height), interpolation=interpolation)


def _outline(tile: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> None:
    if not mask.any():
        return
    small = _fit(mask.astype(np.uint8) * 255, tile.shape[:2], nearest=True)
    contours, _ = cv2.findContours((small > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tile, contours, -1, colour, 1, cv2.LINE_8)


def _labelled(tile: np.ndarray, label: str) -> np.ndarray:
    header = np.full((_HEADER, tile.shape[1], 3), 24, np.uint8)
    scale = 0.4
    text = label
    while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > tile.shape[1] - 6:
        text = text[:-1]
    cv2.putText(header, text, (3, _HEADER - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([header, tile])


def _colour_bar(width: int, vmax: float) -> np.ndarray:
    bar = np.full((28, width, 3), 24, np.uint8)
    span = max(1, min(width - 120, 256))
    ramp = colourize(np.tile(np.linspace(0, vmax, span, dtype=np.float32), (10, 1)), vmax)
    bar[4:14, 40 : 40 + span] = ramp
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(bar, "0", (28, 13), font, 0.35, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.putText(bar, f">={vmax:g} |d alpha|", (44 + span, 13), font, 0.35, (235, 235, 235), 1, cv2.LINE_AA)
    return bar


def heatmap_sheet(
    image: np.ndarray,
    alpha: np.ndarray,
    obfuscated: Sequence[np.ndarray],
    changes: Sequence[np.ndarray],
    labels: Sequence[str],
    facemask: np.ndarray,
    band: np.ndarray,
    tile: int = 256,
    vmax: float = DEFAULT_VMAX,
) -> np.ndarray:
    """The sheet as RGB uint8: `image` (RGB uint8 H x W x 3) and `alpha` (float32 H x W in [0, 1],
    the matte of the unobfuscated image), then per obfuscation its input and |Δα| (float H x W);
    `facemask` and `band` (bool H x W) are outlined. Tiles are scaled so their longer side is
    `tile` pixels."""
    if not (len(obfuscated) == len(changes) == len(labels)):
        raise ValueError("one obfuscated image, one change map and one label per obfuscation")
    height, width = image.shape[:2]
    factor = tile / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    nearest = factor > 1  # small images: show the pixels

    top = [_fit(image, size, nearest)]
    _outline(top[0], facemask, _FACE_COLOUR)
    top += [_fit(picture, size, nearest) for picture in obfuscated]
    matte = np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    bottom = [_fit(np.repeat(matte[..., None], 3, axis=2), size, nearest)]
    for change in changes:
        heat = _fit(colourize(change, vmax), size, nearest)
        _outline(heat, band, _BAND_COLOUR)
        _outline(heat, facemask, _FACE_COLOUR)
        bottom.append(heat)

    top = [_labelled(t, label) for t, label in zip(top, ["input (face mask outlined)", *labels], strict=True)]
    bottom = [
        _labelled(t, label) for t, label in zip(bottom, ["matte", *(f"|d alpha| {name}" for name in labels)], strict=True)
    ]
    gap = np.full((top[0].shape[0], _GAP, 3), 24, np.uint8)

    def strip(tiles: list[np.ndarray]) -> np.ndarray:
        parts: list[np.ndarray] = []
        for index, part in enumerate(tiles):
            if index:
                parts.append(gap)
            parts.append(part)
        return np.hstack(parts)

    rows = [strip(top), np.full((_GAP, strip(top).shape[1], 3), 24, np.uint8), strip(bottom)]
    sheet = np.vstack(rows)
    return np.vstack([sheet, _colour_bar(sheet.shape[1], vmax)])
