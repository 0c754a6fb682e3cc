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
