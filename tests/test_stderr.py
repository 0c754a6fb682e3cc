"""p3m.io.stderr: the process-wide, reference-counted silencing of descriptor 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def test_overlapping_blocks_restore_descriptor_2_only_at_the_end() -> None:
    """Blocks of two threads overlap and the first one ends first: C-level writes stay silenced
    until the last block ends, and descriptor 2 then comes back (a save/restore per block would
    show the second block's writes and leave descriptor 2 on /dev/null for good)."""
    script = textwrap.dedent(
        """
        import os
        from p3m.io.stderr import native_stderr_silenced

        first, second = native_stderr_silenced(), native_stderr_silenced()
        os.write(2, b"shown-0\\n")
        first.__enter__()
        os.write(2, b"hidden-1\\n")
        second.__enter__()
        first.__exit__(None, None, None)
        os.write(2, b"hidden-2\\n")
        second.__exit__(None, None, None)
        os.write(2, b"shown-1\\n")
        with native_stderr_silenced():
            with native_stderr_silenced():
                os.write(2, b"hidden-3\\n")
            os.write(2, b"hidden-4\\n")
        os.write(2, b"shown-2\\n")
        """
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == [b"shown-0", b"shown-1", b"shown-2"]


def test_face_mesh_warning_stays_silent_when_the_first_crop_has_no_face() -> None:
    """MediaPipe prints its `landmark_projection_calculator` warning once per process, on the
    first Face Mesh call that finds a face: a first call on a faceless crop must not end the
    silencing."""
    import pytest

    pytest.importorskip("mediapipe")
    script = textwrap.dedent(
        """
        import numpy as np
        from skimage import data
        from p3m.detection.faces import mediapipe_process
        from p3m.privacy.landmarks import _face_mesh

        blank = np.zeros((256, 256, 3), np.uint8)
        face = np.ascontiguousarray(data.astronaut()[:400, 50:450])
        assert mediapipe_process(_face_mesh(), blank).multi_face_landmarks is None
        for _ in range(2):
            assert mediapipe_process(_face_mesh(), face).multi_face_landmarks is not None
        """
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"landmark_projection" not in done.stderr and b"W0000" not in done.stderr, done.stderr


@pytest.mark.slow
def test_mediapipe_graphs_start_silently_and_anonymize_video_prints_no_native_log(tmp_path) -> None:
    """A MediaPipe solution opens its TensorFlow Lite calculators on its own threads after the
    constructor returns; absl's `inference_feedback_manager.cc ... Feedback manager requires a
    model with a single signature` line came then, in the middle of `p3m anonymize clip.mp4`.
    The graphs p3m builds are started (run once) inside the silenced block: a first unsilenced
    `process` on them prints nothing, and neither does the video command."""
    import pytest

    pytest.importorskip("mediapipe")
    pytest.importorskip("av")
    from skimage import data

    from video_clips import write_source

    face = data.astronaut()[:192, 96:352]
    clip = write_source(tmp_path / "face.mp4", [face, face], [0, 40])
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from p3m.detection.faces import _mediapipe_detector
        from p3m.detection.people import _pose_graph
        from p3m.privacy.landmarks import _face_mesh

        blank = np.zeros((96, 96, 3), np.uint8)
        for graph in (_mediapipe_detector(0, 0.5), _mediapipe_detector(1, 0.5), _face_mesh(), _pose_graph(0.5)):
            graph.process(blank)  # not silenced: the graph must have started already
        from p3m.cli import app
        sys.argv = ["p3m", "anonymize", sys.argv[1], "-o", sys.argv[2], "--audit-detectors", "mediapipe"]
        app()
        """
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "P3M_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(clip), str(tmp_path / "out")],
        capture_output=True, env=environment, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "face.mp4").exists()
    assert b"inference_feedback_manager" not in done.stderr and b"W0000" not in done.stderr, done.stderr
