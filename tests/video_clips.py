"""Helpers of the video tests: tiny clips written with PyAV directly, and stand-in models."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from p3m.models.p3mnet import P3MModel, P3MOutput, fuse_global_local

HEIGHT, WIDTH = 48, 64
# Variable frame rate: the gaps between frames differ (milliseconds).
VFR_PTS_MS = [0, 40, 80, 150, 170, 250, 290, 400]


def rgba_frame(index: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A smooth colour field and a matte with a soft edge, hair-like strands and a hole."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    colour = np.stack(
        [80 + 2 * xx + index, 60 + 3 * yy, 150 + np.sin(xx / 7) * 40 + np.cos(yy / 5) * 30], axis=2
    )
    radius = np.hypot(xx - 26 - 2 * index, yy - 30)
    alpha = np.clip((18 - radius) / 5, 0, 1) * 255
    strands = np.zeros((height, width), np.float32)
    for k in range(4):
        cv2.line(strands, (30 + 6 * k + index, 2), (22 + 5 * k, 20), 150.0, 1, cv2.LINE_AA)
    alpha = np.maximum(alpha, strands)
    alpha[28:32, 20:24] = 0
    return np.dstack([np.clip(colour, 0, 255), alpha]).round().astype(np.uint8)


def write_source(
    path: Path,
    frames: list[np.ndarray],
    pts_ms: list[int],
    audio_seconds: float = 0.0,
    container_options: dict[str, str] | None = None,
) -> Path:
    """A test clip written with PyAV directly: H.264 frames at `pts_ms`, optional AAC sine tone."""
    container = av.open(str(path), "w", options=container_options or {})
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, 1000)
    stream.codec_context.time_base = Fraction(1, 1000)
    audio = None
    if audio_seconds:
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "stereo"
    for frame, pts in zip(frames, pts_ms, strict=True):
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:, :, :3]), format="rgb24")
        picture.pts = pts
        picture.time_base = Fraction(1, 1000)
        for packet in stream.encode(picture):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio is not None:
        samples = int(44100 * audio_seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples - 1023, 1024):
            chunk = av.AudioFrame.from_ndarray(
                np.stack([tone[start : start + 1024]] * 2), format="fltp", layout="stereo"
            )
            chunk.sample_rate, chunk.pts = 44100, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    container.close()
    return path


def streams(path: Path) -> dict[str, tuple[str, float | None]]:
    """{stream type: (codec name, duration in seconds or None)} of a media file."""
    with av.open(str(path)) as container:
        return {
            stream.type: (
                stream.codec_context.name,
                float(stream.duration * stream.time_base) if stream.duration else None,
            )
            for stream in container.streams
        }


class BrightIsPerson(P3MModel):
    """A parameter-free P3M-Net stand-in: bright pixels are person, a band around them transition.

    Deterministic and fast, with the real interface (`P3MOutput`, `check_input`), so the
    official strategies, `p3m.matte` and ONNX export take it like a registered model.
    """

    variant = "bright-is-person"

    def forward(self, x: torch.Tensor) -> P3MOutput:
        self.check_input(x)
        brightness = x.mean(dim=1, keepdim=True)
        score = torch.tanh(brightness * 2.0)
        logits = torch.cat([-score, 0.3 - score.abs(), score], dim=1) * 4.0
        local = torch.sigmoid(brightness * 3.0)
        fusion = fuse_global_local(logits, local)
        return P3MOutput(logits, local, fusion, logits, logits, logits)
