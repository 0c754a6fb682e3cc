"""Options every image command shares, and the words the command line answers bad values with:
`--max-image-pixels` (the decoding cap), `--max-pixels` / `--rotations` errors that name the
option, and help that shows every option name whole at 80 columns."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from conftest import png_header_claiming
from p3m.cli import app
from p3m.errors import ConfigError, ImageTooLargeError
from p3m.io import DEFAULT_MAX_PIXELS, image_pixel_cap, read_image
from p3m.vocabulary import MAX_IMAGE_PIXELS

runner = CliRunner()

# Commands that read image files: each takes --max-image-pixels.
IMAGE_COMMANDS = (
    ("matte",), ("anonymize",), ("eval",), ("baseline",), ("check-data",), ("train",),
    ("evaluate-model",), ("eval-video",), ("export-onnx",), ("serve",), ("cp-sources", "build"),
    ("experiment", "obfuscation"), ("experiment", "ablation"), ("experiment", "copy-paste"),
    ("experiment", "baselines"), ("experiment", "sensitivity"),
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))
    monkeypatch.delenv("P3M_MAX_IMAGE_PIXELS", raising=False)


def _click_command(*path: str) -> Any:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


# --------------------------------------------------------------------------- --max-image-pixels


def test_one_cap_for_library_command_line_and_service() -> None:
    from p3m.serve import ServeConfig

    assert DEFAULT_MAX_PIXELS == MAX_IMAGE_PIXELS == ServeConfig().max_image_pixels
    # Real photos pass: 100-megapixel medium format and phones, 150-megapixel backs.
    assert MAX_IMAGE_PIXELS > 11648 * 8736 and MAX_IMAGE_PIXELS > 12000 * 9000
    assert 14204 * 10652 < MAX_IMAGE_PIXELS < 14000 * 13000
    for path in IMAGE_COMMANDS:
        options = {param.name: param for param in _click_command(*path).params}
        assert "max_image_pixels" in options, path
        assert options["max_image_pixels"].opts == ["--max-image-pixels"]
        assert options["max_image_pixels"].default == MAX_IMAGE_PIXELS, path


def test_image_pixel_cap_holds_in_the_block_then_restores(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(data.astronaut()[::16, ::16]).save(path)  # 32 x 32
    with image_pixel_cap(1000):
        with pytest.raises(ImageTooLargeError, match=r"32x32 = 1,024 px, more than the cap of 1,000 px"):
            read_image(path)
        assert read_image(path, max_pixels=1024).shape == (32, 32, 3)  # an explicit cap wins
        with image_pixel_cap(0):  # 0: no cap
            assert read_image(path).shape == (32, 32, 3)
        with pytest.raises(ImageTooLargeError):
            read_image(path)
    assert "P3M_MAX_IMAGE_PIXELS" not in os.environ
    assert read_image(path, max_pixels=0).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="0 \\(no cap\\) or positive"):
        read_image(path, max_pixels=-1)


def test_matte_folder_run_refuses_an_image_over_the_cap_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(data.astronaut()[::8, ::8]).save(folder / "small.png")  # 64 x 64 = 4,096
    Image.fromarray(data.astronaut()[::4, ::4]).save(folder / "large.png")  # 128 x 128 = 16,384
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["matte", str(folder), "-o", str(out), "-m", "selfie-cf", "--save", "alpha",
              "--max-image-pixels", "5000"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert (out / "small_alpha.png").is_file() and not (out / "large_alpha.png").exists()
    lines = [line for line in result.output.splitlines() if "large.png" in line and "cap" in line]
    assert lines, result.output
    assert "128x128 = 16,384 px" in lines[0] and "cap of 5,000 px" in lines[0]
    assert "--max-image-pixels" in lines[0]
    assert "P3M_MAX_IMAGE_PIXELS" not in os.environ  # the cap ended with the command


def test_default_cap_refuses_a_header_only_huge_png_from_its_header(tmp_path: Path) -> None:
    bomb = tmp_path / "blank.png"
    bomb.write_bytes(png_header_claiming(14000, 13000))  # 182 megapixels claimed, 100 bytes
    assert bomb.stat().st_size < 200
    result = runner.invoke(app, ["matte", str(bomb), "-o", str(tmp_path / "out"), "-m", "selfie-cf"])
    assert result.exit_code == 1, result.output
    # Refused from the header: decoding would have failed as a truncated file instead.
    assert "blank.png: image is 14000x13000 = 182 MP, more than the cap of 160 MP" in (
        " ".join(result.output.split())
    )
    assert "truncated" not in result.output
    assert "--max-image-pixels" in result.output


def test_the_environment_variable_sets_the_cap_the_option_overrides(tmp_path: Path) -> None:
    """P3M_MAX_IMAGE_PIXELS, which the cap's own error recommends, was ignored by the CLI (the
    option's default won over it)."""
    bomb = tmp_path / "blank.png"
    bomb.write_bytes(png_header_claiming(14000, 13000))
    image = tmp_path / "small.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    command = ["matte", "-o", str(tmp_path / "out"), "-m", "selfie-cf", "--save", "alpha"]
    refused = runner.invoke(app, [*command, str(image)], env={"P3M_MAX_IMAGE_PIXELS": "100"})
    assert refused.exit_code == 1 and "cap of 100 px" in " ".join(refused.output.split()), refused.output
    # The error says where the cap came from; the variable's old name is not the pixel budget.
    assert "set in the environment by P3M_MAX_IMAGE_PIXELS=100" in " ".join(refused.output.split())
    old = runner.invoke(app, [*command, str(image)], env={"P3M_MAX_IMAGE_PIXELS": "", "P3M_MAX_PIXELS": "100"})
    said = " ".join(old.output.split())
    assert "by P3M_MAX_PIXELS=100 (the old name of P3M_MAX_IMAGE_PIXELS" in said and "--max-image-pixels N" in said
    allowed = runner.invoke(app, [*command, str(image), "--max-image-pixels", "5000"], env={"P3M_MAX_IMAGE_PIXELS": "100"})
    assert allowed.exit_code == 0, allowed.output
    raised = runner.invoke(app, [*command, str(bomb)], env={"P3M_MAX_IMAGE_PIXELS": "200000000"})
    assert "cap of" not in raised.output and "blank.png" in raised.output  # past the cap: fails decoding


def test_the_cap_error_speaks_python_in_python(tmp_path: Path) -> None:
    """From Python the cap's error named --max-image-pixels next to the Python way."""
    image = tmp_path / "small.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    with pytest.raises(ImageTooLargeError) as raised, image_pixel_cap(100):
        read_image(image)
    message = str(raised.value)
    assert "raise the cap: `with p3m.io.image_pixel_cap(N):` around the reads (0 = no cap)" in message
    assert "--" not in message and "environment" not in message  # the block's cap, not the user's variable


def test_anonymize_takes_the_cap_too(tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    result = runner.invoke(
        app, ["anonymize", str(image), "-o", str(tmp_path / "out"), "--no-alpha", "--no-audit",
              "--verify", "none", "--max-image-pixels", "100"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "64x64 = 4,096 px, more than the cap of 100 px" in " ".join(result.output.split())


# --------------------------------------------------------------------------- errors name options


@pytest.mark.parametrize("value", ["10", "1023", "-5"])
def test_max_pixels_error_names_the_option(tmp_path: Path, value: str) -> None:
    image = tmp_path / "small.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    result = runner.invoke(app, ["matte", str(image), "-o", str(tmp_path / "out"), "--max-pixels", value])
    assert isinstance(result.exception, ConfigError), result.output
    message = str(result.exception)
    assert message.startswith("--max-pixels must be at least 1024 pixels") and message.endswith(f"got {value}")
    assert "max_pixels" not in message.replace("--max-pixels", "")
    assert not (tmp_path / "out").exists()


def test_the_library_names_its_own_parameter() -> None:
    from p3m.inference.api import Matter
    from p3m.inference.budget import MATTE_MAX_PIXELS, pixel_budget_from_option

    with pytest.raises(ConfigError, match=r"^max_pixels must be at least 1024 pixels .*got 10$"):
        Matter("selfie-cf", max_pixels=10)
    assert pixel_budget_from_option(0) == MATTE_MAX_PIXELS
    assert pixel_budget_from_option(-1) is None
    assert pixel_budget_from_option(2048) == 2048


@pytest.mark.parametrize(
    ("value", "expected"),
    [("45", "--rotations must be among 0, 90, 180, 270 degrees, got 45"),
     ("", "--rotations needs at least one orientation"),
     ("up", "--rotations takes degrees such as 0,90,180,270, got 'up'")],
)  # fmt: skip
def test_anonymize_rotations_error_names_the_option(tmp_path: Path, value: str, expected: str) -> None:
    image = tmp_path / "face.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    result = runner.invoke(app, ["anonymize", str(image), "-o", str(tmp_path / "out"), f"--rotations={value}"])
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(expected)


def test_numeric_options_out_of_range_are_refused_by_name(tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    out = str(tmp_path / "out")
    for args in (["matte", str(image), "-o", out, "--max-image-pixels", "-1"],
                 ["matte", str(image), "-o", out, "--threads", "0"],
                 ["anonymize", str(image), "-o", out, "--centerface-confidence", "2"],
                 ["anonymize", str(image), "-o", out, "--strength", "0"]):  # fmt: skip
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 2, args
        assert f"Invalid value for '{args[-2]}'" in result.output, result.output


# --------------------------------------------------------------------------- help at 80 columns


def _all_commands() -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, command: Any) -> None:
        found.append((prefix, command))  # groups too: `p3m --help`, `p3m weights --help`
        for name, sub in getattr(command, "commands", {}).items():  # Typer vendors its own click
            walk(f"{prefix} {name}".strip(), sub)

    walk("", typer.main.get_command(app))
    return found


def test_help_types_read_as_values() -> None:
    from p3m.cli._help import readable_type

    assert readable_type("<list[Path]>") == "<path>"
    assert readable_type("<list[str]>") == "<str>"
    assert readable_type("<float range>") == "<float>"
    assert readable_type("<blur|mosaic|zero>") == "<blur | mosaic | zero>"
    assert readable_type("<list[hybrid|resize]>") == "<hybrid | resize>"


def test_help_at_80_columns_shows_every_option_name_whole_and_no_flag_placeholder() -> None:
    for name, command in _all_commands():
        result = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
        assert result.exit_code == 0, (name, result.output)
        assert max(len(line) for line in result.output.splitlines()) <= 80, name
        assert "<bool>" not in result.output, name
        # Types as a user writes values: no Python annotations, and no choice cut inside a name.
        assert "list[" not in result.output and " range>" not in result.output and "<>" not in result.output, name
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            for option in (*param.opts, *param.secondary_opts):
                whole = re.compile(rf"(?<![\w-]){re.escape(option)}(?![\w…-])")
                assert whole.search(result.output), (name, option, result.output)


def test_the_old_name_of_the_variable_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """P3M_MAX_PIXELS (the decoding cap's first name, easily taken for the pixel budget
    --max-pixels) still sets the cap, in the library and the CLI; the new name wins."""
    from p3m.io import images

    image = tmp_path / "small.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    monkeypatch.delenv("P3M_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.setenv("P3M_MAX_PIXELS", "100")
    images._note_old_name.cache_clear()
    with caplog.at_level("WARNING", logger="p3m.io.images"), pytest.raises(ImageTooLargeError):
        read_image(image)
    assert "P3M_MAX_IMAGE_PIXELS" in caplog.text
    monkeypatch.setenv("P3M_MAX_IMAGE_PIXELS", "0")
    assert read_image(image).shape == (64, 64, 3)
    command = ["matte", "-o", str(tmp_path / "out"), "-m", "selfie-cf", "--save", "alpha", str(image)]
    refused = runner.invoke(app, command, env={"P3M_MAX_PIXELS": "100", "P3M_MAX_IMAGE_PIXELS": None})
    assert refused.exit_code == 1 and "cap of 100 px" in " ".join(refused.output.split()), refused.output


def test_an_on_off_pair_does_not_widen_the_option_names() -> None:
    """`--audit/--no-audit` put `--no-audit` in a column of its own that every option of
    `p3m anonymize --help` paid for; the pair shows as `--audit`, the off name and the default
    in its description, and both names still parse."""
    result = runner.invoke(app, ["anonymize", "--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": "100"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    out_row = next(line for line in lines if line.startswith("│ --out "))
    assert re.search(r" -o {1,6}<path> ", out_row), out_row  # no empty off-name column after -o
    audit_row = next(line for line in lines if line.startswith("│ --audit "))
    assert "--no-audit" not in audit_row.split("Run the")[0], audit_row
    text = " ".join(line.strip("│ ") for line in lines)
    assert "check identity. On by default; --no-audit turns it off." in " ".join(text.split())
    assert "exist. On by default; --overwrite turns it off." in " ".join(text.split())
    assert "[default: audit]" not in result.output and "[default: True]" not in result.output


def test_ray_actors_take_the_drivers_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray started before the command (a notebook, a cluster) has actors without the driver's
    environment: the executor hands the cap to each actor."""
    pytest.importorskip("ray", reason='the Ray engine is the [scale] extra: pip install "p3m[scale]"')
    from ray import cloudpickle

    from p3m.scale.ray_engine import _ItemWorker, driver_environment

    monkeypatch.delenv("P3M_MAX_PIXELS", raising=False)
    with image_pixel_cap(4321):
        sent = driver_environment()
    assert sent == {"P3M_MAX_IMAGE_PIXELS": "4321", "P3M_MAX_PIXELS": None}
    monkeypatch.setenv("P3M_MAX_IMAGE_PIXELS", "99")  # what an actor's process may have had
    _ItemWorker(cloudpickle.dumps(_no_task), cloudpickle.dumps(()), None, "", sent)
    assert os.environ["P3M_MAX_IMAGE_PIXELS"] == "4321"
    _ItemWorker(cloudpickle.dumps(_no_task), cloudpickle.dumps(()), None, "", driver_environment())
    assert os.environ["P3M_MAX_IMAGE_PIXELS"] == "4321"
    _ItemWorker(cloudpickle.dumps(_no_task), cloudpickle.dumps(()), None, "", {"P3M_MAX_IMAGE_PIXELS": None})
    assert "P3M_MAX_IMAGE_PIXELS" not in os.environ


def _no_task() -> None:
    return None


def test_the_anonymize_api_checks_the_cap_first_and_keeps_the_alpha_of_bytes(tmp_path: Path) -> None:
    """`p3m.anonymize(path)` read the input's alpha with a plain Pillow open before p3m's cap
    (a 182 MP header raised Pillow's DecompressionBombError); `p3m.anonymize(bytes)` lost the
    input's alpha (the service passes bytes)."""
    import io

    import numpy as np

    import p3m
    from p3m.errors import ImageTooLargeError

    bomb = tmp_path / "blank.png"
    bomb.write_bytes(png_header_claiming(14000, 13000))
    for source in (bomb, bomb.read_bytes()):
        with pytest.raises(ImageTooLargeError, match="14000x13000"):
            p3m.anonymize(source, alpha_from=None, verify="none")
    rgba = np.dstack([data.astronaut()[::4, ::4], np.full((128, 128), 255, np.uint8)])
    rgba[:, 100:, 3] = 0
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    result = p3m.anonymize(buffer.getvalue(), alpha_from=None, verify="none")
    assert result.input_alpha is not None and np.array_equal(result.input_alpha, rgba[:, :, 3])


def test_verbose_is_a_counted_flag_for_p3m_loggers() -> None:
    """`-v` showed an `<int>` placeholder (so `p3m -v 2 matte` looked right and failed), and
    `-vv` put every library at DEBUG (matplotlib's font search buried p3m's lines)."""
    import subprocess
    import sys

    help_text = runner.invoke(app, ["--help"], env={"COLUMNS": "100"}).output
    line = next(line for line in help_text.splitlines() if "--verbose" in line)
    assert "<int>" not in line and "INTEGER" not in line
    script = (
        "import logging\n"
        "from p3m.cli import app\n"
        "try:\n    app(['-vv', 'demo', '--help'])\nexcept SystemExit:\n    pass\n"
        "logging.getLogger('matplotlib.font_manager').debug('MPL-DEBUG')\n"
        "logging.getLogger('p3m.inference').debug('P3M-DEBUG')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "P3M-DEBUG" in done.stderr and "MPL-DEBUG" not in done.stderr, done.stderr[-500:]


def test_resizing_is_explained_once_per_run_and_lines_stay_short(tmp_path: Path) -> None:
    """Every image's line repeated "... a larger --max-pixels solves finer, slower" (~300
    characters a line); the library's words (the service's X-P3M-Resized header) named the flag."""
    from p3m.inference.backends import ResizeInfo

    assert "--" not in ResizeInfo((100, 200), (20, 40), 0.2, 1024, kind="solve").describe()
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(data.astronaut()[::4, ::4]).save(folder / name)
    result = runner.invoke(
        app, ["matte", str(folder), "-o", str(tmp_path / "out"), "-m", "selfie-cf", "--save", "alpha", "--max-pixels", "1024"],
        env={"COLUMNS": "1000"},
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "_alpha.png" in line]
    assert len(lines) == 2 and all("solved at" in line and len(line.split(" -> ")[1]) < 140 and "--" not in line for line in lines), lines
    assert result.output.count("(--max-pixels)") == 1 and result.output.count("solves finer, slower") == 1


def test_small_budgets_and_failure_only_runs_read_right(tmp_path: Path) -> None:
    """"the 0.00 MP pixel budget" for --max-pixels 1024, and "failed 1 in 0.0 s (465.23
    images/s)" for a run that matted nothing."""
    from p3m.inference.backends import ResizeInfo

    note = ResizeInfo((100, 200), (20, 40), 0.2, 1024, kind="solve").describe()
    assert "a pixel budget of 1,024 px" in note and "0.00 MP" not in note
    assert "above the pixel budget of 2.10 MP" in ResizeInfo((2000, 2000), (1000, 1000), 0.5, 2_100_000).describe()
    broken = tmp_path / "in"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["matte", str(broken), "-o", str(tmp_path / "out"), "-m", "selfie-cf"])
    assert result.exit_code == 1 and "failed 1" in result.output
    assert "images/s" not in result.output


@pytest.mark.parametrize("command", [["baseline", "cf", "ROOT"], ["experiment", "baselines", "ROOT"]])
def test_baseline_budget_is_full_resolution_or_a_real_budget(command: list[str]) -> None:
    """`--max-pixels 5` solved the baselines at a few pixels without a word."""
    result = runner.invoke(app, [*command, "--max-pixels", "5"])
    assert result.exit_code == 2
    text = " ".join(result.output.replace("│", " ").split())
    assert "'--max-pixels': must be 0 (full resolution) or at least 1024 pixels, got 5" in text


def test_result_tables_keep_their_numbers_whole_in_an_80_column_terminal() -> None:
    """Rich fitted a wide table (Tables 9/10: nine metric columns) to 80 columns by folding its
    cells, splitting `0.004567` over two lines (and a table printed wider than the terminal is
    cut by the terminal's line wrap); `print_table` gives up the borders, then splits the columns
    into tables that fit, and a table that fits is printed as it is."""
    import io

    from rich.console import Console
    from rich.table import Table

    from p3m.cli._ui import print_table

    def render(columns: int) -> str:
        table = Table(title="wide", title_justify="left")
        table.add_column("method", no_wrap=True)
        numbers = [f"{0.001234 * (index + 1):.6f}" for index in range(columns)]
        for index in range(columns):
            table.add_column(f"group {index}\nMSE", justify="right", overflow="fold")
        table.add_row("B:B ICP", *numbers)
        buffer = io.StringIO()
        print_table(Console(width=80, file=buffer, force_terminal=True, color_system=None, emoji=False), table)
        output = buffer.getvalue()
        assert all(number in output for number in numbers), output
        return output

    assert "│" in render(3) and max(len(line) for line in render(3).splitlines()) <= 80  # fits: as it is
    wide = render(10)  # about 120 columns: split into tables that fit, each led by the row names
    assert "│" not in wide and max(len(line) for line in wide.splitlines()) <= 80, wide
    assert wide.count("B:B ICP") >= 2 and wide.count("wide") == 1


def test_a_background_asks_for_a_composite(tmp_path: Path) -> None:
    """`--background` without composite in --save was silently unused (the README's video
    example wrote no composite). Given alone it adds composite to the default outputs; with a
    --save that makes none it is a one-line error."""
    image = tmp_path / "face.png"
    Image.fromarray(data.astronaut()[::8, ::8]).save(image)
    out = tmp_path / "out"
    made = runner.invoke(app, ["matte", str(image), "-o", str(out), "-m", "selfie-cf", "--background", "red"])
    assert made.exit_code == 0, made.output
    assert sorted(path.name for path in out.glob("face_*.png")) == ["face_alpha.png", "face_composite.png", "face_rgba.png"]
    refused = runner.invoke(app, ["matte", str(image), "-o", str(out), "--save", "alpha", "-b", "red"])
    assert isinstance(refused.exception, ConfigError), refused.output
    assert str(refused.exception) == "--background is for composites, and --save alpha makes none: add composite to --save"


def test_a_single_failed_input_is_reported_once(tmp_path: Path) -> None:
    """`p3m matte bomb.png` printed its error line, then the same line again under "skipped 1
    input(s):"; a folder run still recaps its failures at the end."""
    bomb = tmp_path / "blank.png"
    bomb.write_bytes(png_header_claiming(14000, 13000))
    result = runner.invoke(app, ["matte", str(bomb), "-o", str(tmp_path / "out"), "-m", "selfie-cf"])
    assert result.exit_code == 1
    assert " ".join(result.output.split()).count("more than the cap of 160 MP") == 1, result.output
    assert "skipped 1 input(s)" in result.output
    Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / "good.png")
    both = runner.invoke(app, ["matte", str(bomb), str(tmp_path / "good.png"), "-o", str(tmp_path / "o2"), "-m", "selfie-cf"])
    assert " ".join(both.output.split()).count("more than the cap of 160 MP") == 2, both.output  # live, then recap


def test_progress_bars_keep_counts_and_times_whole_beside_a_long_name() -> None:
    """At 80 columns a long cell name ("Normal training images on P3M-500-P: synth_p_0001")
    squeezed the elapsed and remaining times to `0:0…`; the name is cut instead."""
    import io

    from rich.console import Console

    from p3m.cli._ui import item_progress

    buffer = io.StringIO()
    console = Console(width=80, file=buffer, force_terminal=True, color_system=None)
    with item_progress("Tables 9/10", console, show_name=True, show_elapsed=True) as progress:
        task = progress.add_task("x", total=8, name="Normal training images on P3M-500-P: synth_p_0001 " * 2)
        progress.update(task, completed=6)
        progress.refresh()
    line = buffer.getvalue().replace("\r", "\n").split("\n")
    shown = [text for text in line if "6/8" in text][-1]
    assert "0:00:00" in shown and "…" in shown and len(shown.replace("\x1b[2K", "")) <= 80, shown


def test_stdout_output_refuses_a_video_in_one_line(tmp_path: Path) -> None:
    """`p3m matte clip.mp4 -o -` said "is a video, not an image; give it a video suffix" of a
    file already named .mp4 (and, with a video --background, that the input was no video)."""
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(64))
    for extra in ([], ["--background", str(clip)]):
        result = runner.invoke(app, ["matte", str(clip), "-o", "-", *extra])
        assert isinstance(result.exception, ConfigError), result.output
        assert "a video's outputs need a folder (-o DIR)" in str(result.exception)


def test_a_table_block_with_a_cell_wider_than_the_terminal_keeps_its_row_names_whole() -> None:
    """`p3m weights list` at 80 columns: the stacked tables cut the model names
    (`p3mnet-r34-tfi-…`) and the URLs; a block that cannot fit is printed whole instead."""
    import io

    from rich.console import Console
    from rich.table import Table

    from p3m.cli._ui import print_table

    table = Table(title="weights")
    for name in ("model", "checkpoint", "installed", "sha256", "source"):
        table.add_column(name)
    url = "https://drive.google.com/uc?export=download&id=1Vzbt5NUV-q1KP4M8dDXmzP-3sezYdRSh"
    table.add_row("p3mnet-r34-tfi-sbfi", "p3mnet_pretrained_on_p3m10k.pth", "no", "-", url)
    buffer = io.StringIO()
    print_table(Console(width=80, file=buffer, force_terminal=True, color_system=None), table)
    output = buffer.getvalue()
    assert "…" not in output and url in output and output.count("p3mnet-r34-tfi-sbfi") >= 2, output


def test_library_errors_suggest_options_in_python_terms() -> None:
    """Messages raised from Python named --flags (`pass --fresh`, `--data-root DIR`); they name
    keywords, and the command line words them as its flags (some spelled otherwise)."""
    from p3m.cli import command_line_option
    from p3m.training.config import TrainConfig
    from p3m.training.trainer import Trainer

    assert command_line_option("resume", False) == "--fresh"
    with pytest.raises(ConfigError) as raised:
        Trainer(TrainConfig(model="p3mnet-r34"))._samples()
    assert "data.root = DIR in the TrainConfig" in str(raised.value) and "--" not in str(raised.value)
    assert raised.value.worded(command_line_option).endswith("set it with --data-root DIR")
