"""p3m.io.stderr: the process-wide, reference-counted silencing of descriptor 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


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
