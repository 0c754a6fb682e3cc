"""The `p3m` command line as a whole: cheap to start, errors as one red line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "mediapipe", "pymatting", "cv2", "onnx", "onnxruntime", "numba", "fastapi")


def test_help_lists_the_commands_without_importing_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['p3m', '--help']\n"
        "from p3m.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "HEAVY []" in result.stdout
    for command in ("eval", "anonymize", "baseline", "export-onnx", "serve", "cp-sources"):
        assert command in result.stdout


def test_a_user_error_is_one_red_line_and_exit_code_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = subprocess.run(
        [sys.executable, "-m", "p3m.cli", "eval", str(missing), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {missing}: prediction folder not found"]
    assert "Traceback" not in result.stderr
