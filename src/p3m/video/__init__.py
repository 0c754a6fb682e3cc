"""Video: matte and anonymise clips, temporally stable, streaming, in the formats editors use.

    >>> import p3m
    >>> p3m.matte_video("clip.mp4", "out/", save=("alpha", "rgba", "composite"))
    >>> for frame in p3m.iter_matte_video("clip.mp4"):       # your own loop
    ...     frame.alpha, frame.rgba(), frame.time
    >>> p3m.anonymize_video("clip.mp4", "out/clip.mp4")      # faces obfuscated and tracked

Modules: `reader` (PyAV decoding: rotation, timestamps, libvpx alpha), `writer` (ProRes 4444,
VP9 with alpha, PNG sequences, H.264; audio), `temporal` (motion-compensated smoothing),
`pipeline` (bounded queues and ordered worker threads), `matte` (`matte_video`,
`iter_matte_video`), `background` (colour, image or looping video), `anonymize`
(`anonymize_video` with face tracking), `events` (typed progress events), `runs` (clips as
items of a `p3m.runs` folder run: resume, settings, damage checks, the journal), `synthetic` (a
clip with a known alpha). PyAV is the optional extra `p3m[video]`; submodules are imported on first
use, so `import p3m.video` works without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "VIDEO_SUFFIXES": "p3m.video._av",
    "is_video_path": "p3m.video._av",
    "Frame": "p3m.video.reader",
    "VideoInfo": "p3m.video.reader",
    "VideoReader": "p3m.video.reader",
    "probe_video": "p3m.video.reader",
    "read_frames": "p3m.video.reader",
    "read_alpha_frames": "p3m.video.reader",
    "OUTPUT_FORMATS": "p3m.video.writer",
    "VideoWriter": "p3m.video.writer",
    "TemporalConfig": "p3m.video.temporal",
    "MotionCompensatedSmoother": "p3m.video.temporal",
    "VideoMatteFrame": "p3m.video.matte",
    "VideoMatteReport": "p3m.video.matte",
    "iter_matte_video": "p3m.video.matte",
    "matte_video": "p3m.video.matte",
    "Backdrop": "p3m.video.background",
    "VideoProgress": "p3m.video.events",
    "VideoStarted": "p3m.video.events",
    "VideoFinished": "p3m.video.events",
    "SyntheticClip": "p3m.video.synthetic",
    "anonymize_video": "p3m.video.anonymize",
    "iter_anonymize_video": "p3m.video.anonymize",
    "VideoAnonymizeReport": "p3m.video.anonymize",
    "FaceTracker": "p3m.video.anonymize",
    "plan_video_matte": "p3m.video.runs",
    "run_video_matte": "p3m.video.runs",
    "anonymize_videos": "p3m.video.runs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p3m.video' has no attribute {name!r}")
