"""Video reading and writing (p3m.video.reader / writer): alpha round trips of every output
format, audio carried over, frame counts, display rotation, variable frame rates, bad files."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from p3m.errors import ConfigError, VideoReadError
from p3m.video.reader import (
    TIMESTAMPS_FILE,
    VideoReader,
    probe_video,
    read_alpha_frames,
    read_frames,
)
from p3m.video.writer import OUTPUT_FORMATS, VideoWriter, output_path
from video_clips import HEIGHT, VFR_PTS_MS, WIDTH, rgba_frame, streams, write_source


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video-io")
    frames = [rgba_frame(i) for i in range(len(VFR_PTS_MS))]
    return write_source(folder / "source.mp4", frames, VFR_PTS_MS, audio_seconds=1.0)


@pytest.mark.parametrize("name", ["mov-prores4444", "webm-vp9", "png-sequence"])
def test_alpha_formats_round_trip_alpha_timing_and_audio(
    source: Path, tmp_path: Path, name: str
) -> None:
    frames = [rgba_frame(i) for i in range(len(VFR_PTS_MS))]
    target = output_path(tmp_path / "cutout", name)
    with VideoWriter(
        target, name, "rgba", width=WIDTH, height=HEIGHT,
        time_base=Fraction(1, 1000), frame_rate=Fraction(25), audio_from=source,
    ) as writer:  # fmt: skip
        for frame, pts in zip(frames, VFR_PTS_MS, strict=True):
            writer.write(frame, pts)
    assert target.exists() and not list(tmp_path.glob(".*"))  # no temporary left behind

    info = probe_video(target)
    assert info.has_alpha and (info.width, info.height) == (WIDTH, HEIGHT)
    decoded = list(read_frames(target, with_alpha=True))
    assert len(decoded) == len(frames)
    for got, expected, pts in zip(decoded, frames, VFR_PTS_MS, strict=True):
        assert got.time == pytest.approx(pts / 1000, abs=1e-3)  # variable timing kept
        alpha_error = np.abs(got.alpha.astype(int) - expected[:, :, 3]).max()
        assert alpha_error <= (0 if name == "png-sequence" else 2), alpha_error
        # Colour survives up to YUV rounding (and 4:2:0 chroma for VP9).
        assert np.abs(got.image.astype(int) - expected[:, :, :3]).mean() < 3.0
    mattes = list(read_alpha_frames(target))
    assert len(mattes) == len(frames) and mattes[0].dtype == np.float32
    assert np.abs(mattes[3] * 255 - frames[3][:, :, 3]).max() <= 2.5

    if name == "png-sequence":
        assert (target / TIMESTAMPS_FILE).read_text().split()[-1] == str(VFR_PTS_MS[-1])
        names = sorted(p.name for p in target.iterdir())
        assert names[:2] == [".p3m-output", "000000.png"]  # marked as p3m's: never an input
    else:
        audio = streams(target)["audio"]
        expected_codec = "opus" if name == "webm-vp9" else "aac"  # WebM cannot carry AAC
        assert audio[0] == expected_codec
        if audio[1] is not None:
            assert audio[1] == pytest.approx(1.0, abs=0.06)


def test_native_vp9_decoder_drops_alpha_and_libvpx_keeps_it(tmp_path: Path) -> None:
    # Why the reader switches decoders: FFmpeg's own VP9 decoder returns yuv420p.
    path = tmp_path / "a.webm"
    with VideoWriter(
        path, "webm-vp9", "rgba", width=WIDTH, height=HEIGHT, time_base=Fraction(1, 25)
    ) as writer:
        for index in range(3):
            writer.write(rgba_frame(index), index)
    with av.open(str(path)) as container:
        native = next(container.decode(video=0))
    assert "a" not in native.format.name.replace("yuv", "")
    with VideoReader(path, with_alpha=True) as reader:
        assert next(iter(reader)).alpha is not None


def test_mp4_composites_copy_audio_keep_count_and_reject_alpha(
    source: Path, tmp_path: Path
) -> None:
    frames = [rgba_frame(i)[:, :, :3] for i in range(len(VFR_PTS_MS))]
    target = tmp_path / "composite.mp4"
    with VideoWriter(
        target,
        "mp4",
        "rgb",
        width=WIDTH,
        height=HEIGHT,
        time_base=Fraction(1, 1000),
        audio_from=source,
    ) as writer:
        for frame, pts in zip(frames, VFR_PTS_MS, strict=True):
            writer.write(frame, pts)
    decoded = list(read_frames(target))
    assert [round(f.time * 1000) for f in decoded] == VFR_PTS_MS
    assert np.abs(decoded[2].image.astype(int) - frames[2]).mean() < 3.0
    assert streams(target)["audio"][0] == "aac"
    with pytest.raises(ConfigError, match="no alpha channel"):
        VideoWriter(
            tmp_path / "x.mp4", "mp4", "rgba", width=WIDTH, height=HEIGHT, time_base=Fraction(1, 25)
        )


def test_odd_sizes_are_padded_for_h264(tmp_path: Path) -> None:
    target = tmp_path / "odd.mp4"
    with VideoWriter(
        target, "mp4", "gray", width=33, height=21, time_base=Fraction(1, 25)
    ) as writer:
        writer.write(np.full((21, 33), 200, np.uint8), 0)
    info = probe_video(target)
    assert (info.width, info.height) == (34, 22)


def _rotate_tkhd(path: Path, matrix: tuple[int, ...]) -> None:
    """Write a display matrix into the video track header, as phones do (16.16 / 2.30 fixed)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd")
    version = data[at + 4]
    offset = at + 4 + (4 + 8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4 + 4) + 8 + 8
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def test_phone_rotation_is_applied_to_the_pixels(tmp_path: Path) -> None:
    image = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    image[:10, :10] = 255  # a white square at the stored top-left
    path = write_source(tmp_path / "phone.mp4", [image] * 2, [0, 40])
    # An iPhone held upright: a=0, b=1, c=-1, d=0 -> shown turned 90 degrees clockwise.
    _rotate_tkhd(path, (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000))
    info = probe_video(path)
    assert info.rotation == 270 and (info.width, info.height) == (HEIGHT, WIDTH)
    frame = next(iter(read_frames(path))).image
    assert frame.shape == (WIDTH, HEIGHT, 3)
    assert frame[:8, -8:].mean() > 200 and frame[:8, :8].mean() < 80  # now at the top-right


def test_variable_frame_rate_timestamps_are_read(source: Path) -> None:
    info = probe_video(source)
    assert info.frame_count == len(VFR_PTS_MS) and info.frame_count_exact
    assert info.audio_codec == "aac"
    assert [round(frame.time * 1000) for frame in read_frames(source)] == VFR_PTS_MS


def _audio_only(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=44100)
    stream.layout = "mono"
    chunk = av.AudioFrame.from_ndarray(
        np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
    )
    chunk.sample_rate, chunk.pts = 44100, 0
    for packet in [*stream.encode(chunk), *stream.encode()]:
        container.mux(packet)
    container.close()
    return path


def test_bad_files_give_one_line_naming_the_file(source: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n" * 20)
    (tmp_path / "empty.mov").write_bytes(b"")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(
        source.read_bytes()[: source.stat().st_size // 2]
    )  # index at the end: lost
    cases = {
        tmp_path / "missing.mp4": "file not found",
        tmp_path / "notes.mp4": "not a video",
        tmp_path / "empty.mov": "empty file",
        truncated: "truncated or damaged",
        _audio_only(tmp_path / "sound.m4a"): "no video stream",
    }
    for path, problem in cases.items():
        with pytest.raises(VideoReadError) as caught:
            probe_video(path)
        message = str(caught.value)
        assert problem in message and str(path) in message and "\n" not in message


def test_truncated_stream_fails_instead_of_writing_a_short_video(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(30)]
    path = write_source(
        tmp_path / "fast.mp4",
        frames,
        [40 * i for i in range(30)],
        container_options={"movflags": "faststart"},
    )
    cut = tmp_path / "fast_cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])  # header intact, data cut
    with pytest.raises(VideoReadError, match="truncated|damaged"):
        list(read_frames(cut))


def test_png_sequence_folder_reads_like_a_video(tmp_path: Path) -> None:
    from p3m.io import write_png

    folder = tmp_path / "frames"
    for index in range(3):
        write_png(folder / f"f{index:03d}.png", rgba_frame(index))
    (folder / TIMESTAMPS_FILE).write_text("# timestamp format v2\n0\n50\n125\n")
    info = probe_video(folder)
    assert info.is_sequence and info.frame_count == 3
    assert [f.time for f in read_frames(folder)] == [0.0, 0.05, 0.125]
    assert np.array_equal(
        next(iter(read_alpha_frames(folder))) * 255, rgba_frame(0)[:, :, 3].astype(np.float32)
    )


def test_every_format_is_described() -> None:
    assert set(OUTPUT_FORMATS) == {"mov-prores4444", "webm-vp9", "png-sequence", "mp4"}
    assert [name for name, spec in OUTPUT_FORMATS.items() if spec.carries_alpha] == [
        "mov-prores4444", "webm-vp9", "png-sequence",
    ]  # fmt: skip


def test_without_pyav_one_line_says_what_to_install(source: Path, monkeypatch) -> None:
    import sys

    from p3m.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'p3m\[video\]'") as caught:
        probe_video(source)
    assert "\n" not in str(caught.value)
