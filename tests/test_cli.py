"""The `p3m` command line as a whole: cheap to start, errors as one red line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_serve_on_a_busy_port_is_one_line_before_anything_loads() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "p3m.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is already in use "
        "(another p3m serve? pick another with --port)"
    ]
    assert "serving" not in result.stdout  # no URL printed for a server that never ran


def test_listening_socket_is_bound_and_listening() -> None:
    import pytest

    pytest.importorskip("fastapi")
    from p3m.errors import ConfigError
    from p3m.serve import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        import socket

        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel accepts the connection into the backlog: it listens
    with pytest.raises(ConfigError, match="unknown host"):
        listening_socket("no-such-host.invalid", 0)


def test_command_help_is_reflowed_to_the_terminal_width() -> None:
    from p3m.cli import app, reflow_help

    text = "First line.\n\n    Joined\n    here.\n    - a bullet\n      keeps its line\n\n    Next."
    assert reflow_help(text) == "First line.\n\nJoined here.\n- a bullet\n  keeps its line\n\nNext."
    anonymize = next(c for c in app.registered_commands if c.name == "anonymize")
    assert anonymize.help is not None and "Single-image mode: `p3m anonymize IMAGE" in anonymize.help


def test_an_error_names_the_options_it_suggests_as_the_surface_that_raised_it(monkeypatch, capsys) -> None:
    """"pass --overwrite (overwrite=True)": a library error names the options it suggests as
    Python keywords; the command line prints them as its flags."""
    from p3m import cli
    from p3m.errors import ConfigError

    error = ConfigError("pass {overwrite} or {audit}, {max_pixels}", "x.png", options={"overwrite": True, "audit": False, "max_pixels": 4})
    assert str(error) == "x.png: pass overwrite=True or audit=False, max_pixels=4"
    assert error.problem == "pass overwrite=True or audit=False, max_pixels=4"

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit):
        cli.main([])
    assert "error: x.png: pass --overwrite or --no-audit, --max-pixels 4" in capsys.readouterr().err


def test_an_error_is_printed_as_text_not_markup_or_emoji(monkeypatch, capsys) -> None:
    """`p3m table --protocols` said "two results for p3mnet-r34 on B🅱 ...": Rich read B:B: as
    an emoji code."""
    from p3m import cli
    from p3m.errors import ConfigError

    def fail(*args, **kwargs):
        raise ConfigError("two results on B:B: [bold]x[/bold] here")

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "two results on B:B: [bold]x[/bold] here" in capsys.readouterr().err
