"""`p3m.matte_video` / `p3m.iter_matte_video`: every output, audio, timing, backgrounds, every
model kind, temporal smoothing on the synthetic clip, flat memory, failures leaving nothing."""

from __future__ import annotations

import threading
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import p3m
from p3m.errors import ConfigError, VideoReadError
from p3m.evaluation.temporal import evaluate_alpha_sequence
from p3m.video.background import Backdrop, cover
from p3m.video.events import VideoFinished, VideoProgress, VideoStarted
from p3m.video.matte import plan_video_outputs
from p3m.video.reader import probe_video, read_alpha_frames, read_frames
from p3m.video.synthetic import SyntheticClip
from p3m.video.writer import VideoWriter
from video_clips import VFR_PTS_MS, BrightIsPerson, rgba_frame, streams, write_source


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 frames at variable timing with a second of AAC audio."""
    folder = tmp_path_factory.mktemp("video-matte")
    # The subject over black: `BrightIsPerson` then finds background around it.
    frames = [rgba_frame(i) for i in range(len(VFR_PTS_MS))]
    frames = [(f[:, :, :3] * (f[:, :, 3:] / 255.0)).astype(np.uint8) for f in frames]
    return write_source(folder / "clip.mp4", frames, VFR_PTS_MS, audio_seconds=1.0)


@pytest.fixture(scope="module")
def model() -> BrightIsPerson:
    return BrightIsPerson().eval()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny tensors: torch's thread pool only adds waiting on a busy machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("video_format", ["mov-prores4444", "webm-vp9", "png-sequence"])
def test_matte_video_writes_every_output_with_timing_and_audio(
    vfr_clip: Path, model: BrightIsPerson, tmp_path: Path, video_format: str
) -> None:
    events = []
    report = p3m.matte_video(
        vfr_clip, tmp_path, save="alpha,rgba,composite", video_format=video_format,
        background="#00ff00", model=model, on_event=events.append,
    )  # fmt: skip
    assert report.frames == len(VFR_PTS_MS) and set(report.outputs) == {
        "alpha",
        "rgba",
        "composite",
    }
    assert report.outputs["composite"].suffix == ".mp4"
    expected = list(p3m.iter_matte_video(vfr_clip, model=model))
    for kind, path in report.outputs.items():
        frames = list(read_frames(path, with_alpha=True))
        assert len(frames) == len(VFR_PTS_MS), kind  # frame count kept
        assert [round(f.time * 1000) for f in frames] == VFR_PTS_MS, kind  # and every timestamp
    mattes = list(read_alpha_frames(report.outputs["alpha"]))
    tolerance = 0.5 if video_format == "png-sequence" else 2.0  # 8-bit rounding, or + the codec
    for got, want in zip(mattes, expected, strict=True):
        assert np.abs(got * 255 - want.alpha * 255).max() <= tolerance
    rgba = list(read_frames(report.outputs["rgba"], with_alpha=True))
    assert np.abs(rgba[4].alpha.astype(float) - expected[4].alpha * 255).max() <= tolerance
    # Audio: copied into MOV and MP4, Opus in WebM, none in PNG sequences or the grey matte.
    assert streams(report.outputs["composite"])["audio"][0] == "aac"
    if video_format != "png-sequence":
        assert streams(report.outputs["rgba"])["audio"][0] == (
            "opus" if video_format == "webm-vp9" else "aac"
        )
        assert "audio" not in streams(report.outputs["alpha"])
    # Where the matte is 0 the composite is the background.
    composite = next(iter(read_frames(report.outputs["composite"]))).image
    from scipy import ndimage

    # Away from the subject (4:2:0 chroma bleeds across edges), the composite is the background.
    empty = ndimage.binary_erosion(expected[0].alpha < 0.01, iterations=3)
    assert empty.sum() > 100
    assert np.abs(composite[empty].astype(int) - (0, 255, 0)).mean() < 6
    kinds = [type(event) for event in events]
    assert kinds[0] is VideoStarted and kinds[-1] is VideoFinished and VideoProgress in kinds
    last = [event for event in events if isinstance(event, VideoProgress)][-1]
    assert last.frames_done == last.frames_total == len(VFR_PTS_MS)


def test_single_file_destinations_and_kept_outputs(
    vfr_clip: Path, model: BrightIsPerson, tmp_path: Path
) -> None:
    report = p3m.matte_video(vfr_clip, tmp_path / "cutout.webm", model=model)
    assert list(report.outputs) == ["rgba"] and probe_video(tmp_path / "cutout.webm").has_alpha
    assert plan_video_outputs(vfr_clip, tmp_path / "x.mp4")["composite"][1] == "mp4"
    with pytest.raises(ConfigError, match="no alpha channel"):
        plan_video_outputs(vfr_clip, tmp_path / "x.mp4", save="rgba")
    with pytest.raises(ConfigError, match="no alpha channel"):
        plan_video_outputs(vfr_clip, tmp_path, save="rgba", video_format="mp4")
    with pytest.raises(ConfigError, match="video outputs are"):
        plan_video_outputs(vfr_clip, tmp_path, save="trimap")
    stamp = (tmp_path / "cutout.webm").stat().st_mtime_ns
    again = p3m.matte_video(vfr_clip, tmp_path / "cutout.webm", model=model, overwrite=False)
    assert again.kept == ("rgba",) and again.frames == 0
    assert (tmp_path / "cutout.webm").stat().st_mtime_ns == stamp


def test_a_failing_video_leaves_no_output(model: BrightIsPerson, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(30)]
    clip = write_source(
        tmp_path / "c.mp4",
        frames,
        [40 * i for i in range(30)],
        container_options={"movflags": "faststart"},
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    with pytest.raises(VideoReadError, match="truncated|damaged"):
        p3m.matte_video(cut, out, save="alpha,rgba,composite", model=model)
    assert not out.exists() or not list(out.iterdir())  # no partial file, no temporary
    threads_before = threading.active_count()
    iterator = p3m.iter_matte_video(clip, model=model)
    next(iterator)
    iterator.close()  # stopping early stops the decoder and worker threads
    assert threading.active_count() <= threads_before


def test_background_video_loops_and_images_cover(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    path = tmp_path / "bg.mp4"
    with VideoWriter(path, "mp4", "rgb", width=32, height=16, time_base=Fraction(1, 10)) as writer:
        for index, colour in enumerate(colours):
            writer.write(np.full((16, 32, 3), colour, np.uint8), index)
    backdrop = Backdrop.from_spec(str(path), width=20, height=20)
    seen = [int(np.argmax(backdrop.at(t)[10, 10])) for t in (0.0, 0.1, 0.2, 0.3, 0.41, 0.55, 0.6)]
    assert seen == [0, 1, 2, 0, 1, 2, 0]  # 3 frames at 10 fps: a 0.3 s loop
    assert backdrop.at(0.0).shape == (20, 20, 3)
    assert Backdrop.from_spec("red", 4, 4).at(1.0) == (255, 0, 0)
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, 15:25] = 255
    assert cover(wide, 10, 10).min() == 255  # scaled to cover, centre kept, aspect kept
    with pytest.raises(ConfigError):
        Backdrop.from_spec("missing.mp4", 4, 4)


def test_registered_p3mnet_and_onnx_models_run_on_video(
    vfr_clip: Path, model: BrightIsPerson, tmp_path: Path
) -> None:
    from p3m.models import create_model
    from p3m.models.export import export_onnx

    network = create_model("p3mnet-r34").eval()  # the real architecture, untrained
    frames = list(
        p3m.iter_matte_video(vfr_clip, model=network, foreground=False, strategy="resize")
    )
    assert len(frames) == len(VFR_PTS_MS) and frames[0].alpha.shape == (48, 64)
    onnx_path = tmp_path / "bright.onnx"
    export_onnx(model, onnx_path, height=64, width=64)
    via_onnx = list(p3m.iter_matte_video(vfr_clip, model=str(onnx_path), foreground=False))
    via_torch = list(p3m.iter_matte_video(vfr_clip, model=model, foreground=False))
    for a, b in zip(via_onnx, via_torch, strict=True):
        assert np.abs(a.alpha - b.alpha).max() < 1e-3


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """Two seconds of the synthetic portrait clip at 96 x 160, H.264, with its true mattes."""
    clip = SyntheticClip(height=96, width=160, seconds=2, fps=25)
    path = clip.write(tmp_path_factory.mktemp("synthetic") / "portrait.mp4")
    return path, list(clip.alphas())


@pytest.mark.slow
def test_temporal_smoothing_lowers_dtssd_on_the_synthetic_clip(synthetic) -> None:
    path, truth = synthetic
    results = {}
    for temporal in (False, True):
        mattes = [
            f.alpha
            for f in p3m.iter_matte_video(path, "selfie-cf", temporal=temporal, foreground=False)
        ]
        results[temporal] = evaluate_alpha_sequence(mattes, truth).means
    off, on = results[False], results[True]
    assert on["dtssd"] < 0.97 * off["dtssd"], results
    assert on["sad"] <= 1.05 * off["sad"], results


def _clip(path: Path, seconds: int, fps: int = 4, height: int = 96, width: int = 128) -> Path:
    """A tiny clip: a bright disc crossing a dark striped background."""
    yy, xx = np.mgrid[0:height, 0:width]
    with VideoWriter(
        path, "mp4", "rgb", width=width, height=height, time_base=Fraction(1, fps)
    ) as writer:
        for index in range(seconds * fps):
            image = np.zeros((height, width, 3), np.uint8)
            image[..., 0], image[..., 1] = (xx * 5 + index) % 128, yy * 7 % 128
            centre = width // 4 + index % (width // 2)
            image[(xx - centre) ** 2 + (yy - height // 2) ** 2 < (height // 4) ** 2] = 230
            writer.write(image, index)
    return path


@pytest.mark.slow
def test_memory_stays_flat_with_clip_length(model: BrightIsPerson, tmp_path: Path) -> None:
    short, long = _clip(tmp_path / "10s.mp4", 10), _clip(tmp_path / "60s.mp4", 60)
    p3m.matte_video(_clip(tmp_path / "1s.mp4", 1), tmp_path / "warm", save="alpha", model=model)

    def peak(path: Path) -> tuple[int, int]:
        tracemalloc.start()  # numpy buffers included
        try:
            # The grey matte only (colour estimation costs 10-100x the rest of the pipeline);
            # queues of one frame fill at once, so every run reaches its steady state.
            report = p3m.matte_video(
                path, tmp_path / "out", save="alpha", model=model, workers=1, queue_size=1
            )
            current, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert report.frames == probe_video(path).frame_count
        return top, current

    # Least of two runs each: a run's peak also depends on how the threads interleave.
    short_peak = min(peak(short)[0] for _ in range(2))
    long_runs = [peak(long) for _ in range(2)]
    long_peak = min(top for top, _ in long_runs)
    assert long_peak <= 1.10 * short_peak, (short_peak, long_peak)
    assert max(current for _, current in long_runs) < 0.2 * short_peak  # nothing kept afterwards


def test_default_pixel_budget_is_the_image_one() -> None:
    from p3m.inference.api import MATTE_MAX_PIXELS
    from p3m.video.matte import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == MATTE_MAX_PIXELS


def test_an_output_never_replaces_its_input(
    vfr_clip: Path, model: BrightIsPerson, tmp_path: Path
) -> None:
    copy = tmp_path / "clip.mp4"
    copy.write_bytes(vfr_clip.read_bytes())
    with pytest.raises(ConfigError, match="overwrite the input"):
        p3m.matte_video(copy, copy, save="composite", model=model)
    assert copy.read_bytes() == vfr_clip.read_bytes()


def test_a_truncated_matroska_clip_is_matted_with_a_warning(model: BrightIsPerson, tmp_path: Path) -> None:
    """Matroska lists no frames, only durations: a clip cut short keeps the frames that decode
    and says how many are missing (an MP4's frame table makes the same cut an error, above)."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(20)]
    whole = write_source(tmp_path / "whole.mkv", frames, [40 * i for i in range(20)])  # 0.8 s
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 9 // 10])
    assert probe_video(cut).frame_count == 20 and not probe_video(cut).frame_count_exact
    report = p3m.matte_video(cut, tmp_path / "out", save="alpha", video_format="png-sequence", model=model)
    assert 0 < report.frames < 18
    assert report.warnings == (
        f"truncated: {report.frames} of about 20 frames decoded (the video stops at "
        f"{report.frames * 0.04:.2f} s of the 0.80 s its container declares)",
    )
    complete = p3m.matte_video(whole, tmp_path / "out2", save="alpha", video_format="png-sequence", model=model)
    assert complete.frames == 20 and complete.warnings == ()


def test_an_odd_size_padded_for_h264_is_reported(model: BrightIsPerson, tmp_path: Path) -> None:
    from p3m.io import write_png

    sequence = tmp_path / "odd"  # a PNG sequence: libx264 would not write the odd source itself
    for index in range(2):
        write_png(sequence / f"{index:04d}.png", rgba_frame(index, 47, 63)[:, :, :3])
    report = p3m.matte_video(sequence, tmp_path / "out", save="alpha,composite", video_format="png-sequence", model=model)
    assert (probe_video(report.outputs["composite"]).width, probe_video(report.outputs["alpha"]).width) == (64, 63)
    assert report.warnings == (
        "odd_composite.mp4 is 64x48, not 63x47: H.264 in 4:2:0 needs even sizes, so one row and "
        "one column repeating the edge were added",
    )
