"""p3m.models.hub and p3m.models.transfer: cache, resumable verified downloads (local server
only: plain HTTP through requests, Google Drive through gdown with its hosts sent to 127.0.0.1),
import."""

from __future__ import annotations

import hashlib
import http.server
import importlib
import json
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests
import torch

from p3m.errors import CheckpointError, DownloadError, ModelNotFoundError
from p3m.models import CheckpointSpec, create_model, hub, save_checkpoint, transfer


class _Server:
    """A 127.0.0.1 HTTP server for one payload, with Range support and scripted failures.

    `cut_first`: how many GET requests for the bytes are answered with half of them and a closed
    socket. `drive`: serve a Google-Drive-like confirmation page at /uc (a download form, as
    Drive's virus-scan warning has it), the bytes as an attachment at /download.
    """

    def __init__(self, payload: bytes, cut_first: int = 0, drive: bool = False) -> None:
        self.payload = payload
        self.cut_remaining = cut_first
        self.drive = drive
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server.requests.append((self.path, self.headers.get("Range")))
                if server.drive and self.path.startswith("/uc"):
                    page = (
                        b'<html><body><form id="download-form" '
                        b'action="https://drive.usercontent.google.com/download" method="get">'
                        b'<input type="hidden" name="id" value="ABC">'
                        b'<input type="hidden" name="export" value="download">'
                        b'<input type="hidden" name="confirm" value="t">'
                        b'<input type="hidden" name="uuid" value="u-1"></form></body></html>'
                    )
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header:
                    start = int(range_header.split("=")[1].split("-")[0])
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Disposition", 'attachment; filename="model.pth"')
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                self.end_headers()
                if server.cut_remaining > 0:
                    server.cut_remaining -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client hanging up mid-transfer is part of these tests

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "p3m-home"))
    return tmp_path / "p3m-home"


@pytest.fixture(scope="module")
def r34_checkpoint(tmp_path_factory) -> tuple[Path, bytes]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r34.pth"
    save_checkpoint(create_model("p3mnet-r34", device="cpu"), path)
    return path, path.read_bytes()


def _spec(url: str, sha256: str | None) -> CheckpointSpec:
    return CheckpointSpec(file_name="p3mnet_pretrained_on_p3m10k.pth", url=url, source_page="test", sha256=sha256)


def test_home_is_read_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "a"))
    assert hub.weights_dir() == tmp_path / "a" / "weights"
    monkeypatch.setenv("P3M_HOME", str(tmp_path / "b"))
    assert hub.weights_dir() == tmp_path / "b" / "weights"
    monkeypatch.delenv("P3M_HOME")
    assert hub.p3m_home() == Path.home() / ".cache" / "p3m"


def test_download_verifies_and_records(home, r34_checkpoint):
    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(payload) as server:
        path = hub.download_weights("p3mnet-r34", checkpoint=_spec(server.url + "/f.pth", digest))
    assert path == home / "weights" / "p3mnet-r34" / "p3mnet_pretrained_on_p3m10k.pth"
    assert path.read_bytes() == payload
    assert not list(path.parent.glob("*.part"))
    entry = json.loads((home / "weights" / "index.json").read_text())["weights"]["p3mnet-r34"]
    assert entry["sha256"] == digest and entry["verified_against_registry"] is True
    assert hub.resolve_weights("p3mnet-r34") == path
    assert hub.installed_weights("p3mnet-r34") == path


def test_download_without_registered_hash_records_the_computed_one(home, r34_checkpoint, caplog):
    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(payload) as server:
        hub.download_weights("p3mnet-r34", checkpoint=_spec(server.url + "/f.pth", None))
        assert digest in caplog.text
        entry = json.loads((home / "weights" / "index.json").read_text())["weights"]["p3mnet-r34"]
        assert entry["sha256"] == digest and entry["verified_against_registry"] is False
        # Trust on first use: a later download of the same URL must give the same bytes.
        server.payload = payload[:-10] + b"0123456789"
        with pytest.raises(DownloadError, match="checksum mismatch"):
            hub.download_weights("p3mnet-r34", checkpoint=_spec(server.url + "/f.pth", None), force=True)


def test_interrupted_transfer_is_resumed_with_a_range_request(home, r34_checkpoint):
    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(payload, cut_first=1) as server:
        target = home / "file.pth"
        assert transfer.download_file(server.url + "/f.pth", target, sha256=digest) == digest
    assert target.read_bytes() == payload
    assert server.requests[0][1] is None
    # The resume starts where the bytes on disk end: the half sent, less what requests had
    # buffered of the chunk being read when the socket closed.
    resumed_at = int(server.requests[1][1].removeprefix("bytes=").removesuffix("-"))
    assert len(payload) // 2 - (1 << 20) <= resumed_at <= len(payload) // 2


def test_transfer_that_keeps_failing_gives_a_clear_error_and_resumes_later(home, r34_checkpoint):
    _, payload = r34_checkpoint
    target = home / "file.pth"
    with _Server(payload, cut_first=100) as server, pytest.raises(
        DownloadError, match="interrupted.*run the command again"
    ):
        transfer.download_file(server.url + "/f.pth", target, retries=1)
    part = target.with_name("file.pth.part")
    assert part.exists() and 0 < part.stat().st_size < len(payload) and not target.exists()
    have = part.stat().st_size
    with _Server(payload) as server:
        transfer.download_file(server.url + "/f.pth", target)
    assert server.requests[0][1] == f"bytes={have}-"
    assert target.read_bytes() == payload and not part.exists()


def test_wrong_checksum_deletes_the_download(home, r34_checkpoint):
    _, payload = r34_checkpoint
    target = home / "file.pth"
    with _Server(payload) as server, pytest.raises(DownloadError, match="checksum mismatch") as info:
        transfer.download_file(server.url + "/f.pth", target, sha256="0" * 64)
    assert "\n" not in str(info.value)
    assert not target.exists() and not target.with_name("file.pth.part").exists()


class _ToLocal(requests.adapters.HTTPAdapter):
    """Sends requests for Google's hosts to the local server instead (same path and query)."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 (requests' adapter API)
        parts = urllib.parse.urlsplit(request.url)
        request.url = self.base + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture()
def drive_to(monkeypatch):
    """Point gdown's Google hosts at a local server: gdown builds its requests session in
    `gdown.download._get_session`; the session it returns gets an adapter for those hosts."""
    gdown_download = importlib.import_module("gdown.download")
    original = gdown_download._get_session

    def redirect(server: _Server) -> None:
        def session(**kwargs):  # noqa: ANN003, ANN202
            sess, cookies = original(**kwargs)
            for host in ("drive.google.com", "docs.google.com", "drive.usercontent.google.com"):
                sess.mount(f"https://{host}/", _ToLocal(server.url))
            return sess, cookies

        monkeypatch.setattr(gdown_download, "_get_session", session)

    return redirect


def test_google_drive_confirmation_page_is_followed(home, r34_checkpoint, drive_to):
    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(payload, drive=True) as server:
        drive_to(server)
        url = "https://drive.google.com/file/d/ABC/view?usp=sharing"
        assert transfer.google_drive_id(url) == "ABC"
        assert transfer.google_drive_id("https://drive.google.com/uc?export=download&id=XYZ") == "XYZ"
        assert transfer.google_drive_id("http://127.0.0.1/f.pth") is None
        assert transfer.download_file(url, home / "drive.pth", sha256=digest) == digest
    assert (home / "drive.pth").read_bytes() == payload
    assert sorted(path.name for path in home.iterdir()) == ["drive.pth"]
    assert server.requests[0][0] == "/uc?id=ABC"
    assert server.requests[1][0].startswith("/download?id=ABC&export=download&confirm=t")


def test_google_drive_transfer_resumes_and_is_verified(home, r34_checkpoint, drive_to):
    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    target = home / "drive.pth"
    with _Server(payload, drive=True, cut_first=1) as server:
        drive_to(server)
        with pytest.raises(DownloadError, match="interrupted.*run the command again") as info:
            transfer.download_file("https://drive.google.com/uc?id=ABC", target, sha256=digest, retries=0)
        assert "\n" not in str(info.value) and not target.exists()
        transfer.download_file("https://drive.google.com/uc?id=ABC", target, sha256=digest, retries=0)
    assert target.read_bytes() == payload
    ranges = [header for path, header in server.requests if path.startswith("/download")]
    resumed_at = int(ranges[-1].removeprefix("bytes=").removesuffix("-"))
    assert ranges[0] is None and len(payload) // 2 - (1 << 20) <= resumed_at <= len(payload) // 2
    assert sorted(path.name for path in home.iterdir()) == ["drive.pth"]
    # A Drive file that is not the registered one is deleted, not installed.
    with _Server(payload[::-1], drive=True) as server:
        drive_to(server)
        with pytest.raises(DownloadError, match="checksum mismatch"):
            transfer.download_file("https://drive.google.com/uc?id=ABC", home / "other.pth", sha256=digest)
    assert not (home / "other.pth").exists() and sorted(p.name for p in home.iterdir()) == ["drive.pth"]


def test_import_validates_the_variant_and_copies(home, r34_checkpoint):
    path, payload = r34_checkpoint
    with pytest.raises(CheckpointError):
        hub.import_weights(path, "p3mnet-vitae-s")
    assert hub.installed_weights("p3mnet-vitae-s") is None
    installed = hub.import_weights(path, "p3mnet-r34")
    assert installed.read_bytes() == payload and installed.parent == home / "weights" / "p3mnet-r34"
    rows = {row.name: row for row in hub.list_weights()}
    assert rows["p3mnet-r34"].path == installed
    assert rows["p3mnet-r34"].source.startswith("import:")


def test_missing_weights_say_how_to_install(home):
    with pytest.raises(ModelNotFoundError, match="p3m weights download p3mnet-r34"):
        hub.resolve_weights("p3mnet-r34")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        hub.resolve_weights("missing/file.pth")


def test_unreachable_server_is_one_clear_line(home):
    with pytest.raises(DownloadError, match="cannot (reach the server|download)") as info:
        transfer.download_file("http://127.0.0.1:9/none.pth", home / "x.pth", retries=0, timeout=5)
    assert "\n" not in str(info.value) and "Connection refused" in str(info.value)


def test_http_errors_and_web_pages_are_not_installed(home, r34_checkpoint):
    _, payload = r34_checkpoint
    # /uc answers with an HTML page: not a checkpoint, whatever its status.
    with _Server(payload, drive=True) as server, pytest.raises(DownloadError, match="web page instead"):
        transfer.download_file(server.url + "/uc", home / "page.pth", retries=0)
    assert not (home / "page.pth").exists()


def test_old_import_path_warns_and_still_works():
    with pytest.warns(DeprecationWarning, match="p3m.models.hub"):
        from p3m.inference.weights import resolve_weights
    assert resolve_weights is hub.resolve_weights
    import p3m.inference.weights as old

    with pytest.warns(DeprecationWarning, match="p3m.models.transfer"):
        assert old.download_file is transfer.download_file


def test_import_never_silently_replaces_a_cached_checkpoint(home, r34_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from p3m.cli import app
    from p3m.errors import ConfigError

    path, payload = r34_checkpoint
    installed = hub.import_weights(path, "p3mnet-r34")
    assert hub.import_weights(path, "p3mnet-r34") == installed  # the same file again: nothing to do
    # Other weights (here: the same tensors in the bare state_dict layout, so other bytes).
    other = tmp_path / "mine.pth"
    torch.save(torch.load(path, map_location="cpu", weights_only=True)["state_dict"], other)
    runner = CliRunner()
    refused = runner.invoke(app, ["weights", "import", str(other), "--as", "p3mnet-r34"])
    assert isinstance(refused.exception, ConfigError), refused.output
    message = str(refused.exception)  # the library's words: the Python keyword
    assert "pass force=True to replace them" in message and str(installed) in message and "\n" not in message
    from p3m.cli import command_line_option

    assert "pass --force to replace them" in refused.exception.worded(command_line_option)  # the CLI's
    assert installed.read_bytes() == payload
    forced = runner.invoke(app, ["weights", "import", str(other), "--as", "p3mnet-r34", "--force"])
    assert forced.exit_code == 0, forced.output
    assert installed.read_bytes() == other.read_bytes()
    assert hub.weights_status("p3mnet-r34").source == f"import:{other.resolve()}"


def test_weights_path_exit_codes_and_hints_match_the_help(home, capsys):
    from typer.main import get_command

    from p3m.cli import app, main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(["weights", "path", *args])
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    help_text = get_command(app).commands["weights"].commands["path"].help
    assert "exit code 1" in help_text and "exit code 2" in help_text
    code, out, err = run("p3mnet-r34")
    assert code == 1 and out == ""
    assert "p3m weights download p3mnet-r34" in err and len(err.strip().splitlines()) == 1
    # No checkpoint of Swin-T was ever published: no download to suggest, import or train instead.
    code, _, err = run("p3mnet-swin-t")
    assert code == 1 and "weights download" not in err
    assert "p3m weights import FILE --as p3mnet-swin-t" in err and "p3m train" in err
    code, _, err = run("p3mnet-r99")
    assert code == 2 and "unknown model" in err
    assert "weights download" not in hub.install_hint("p3mnet-swin-t")


def test_unreachable_google_drive_says_so_and_how_to_import(home, drive_to):
    """Offline, a Drive download said "interrupted after 0 bytes; run the command again to
    resume": nothing had been interrupted and a retry cannot help."""
    from types import SimpleNamespace

    drive_to(SimpleNamespace(url="http://127.0.0.1:9"))
    with pytest.raises(DownloadError) as info:
        transfer.download_file("https://drive.google.com/file/d/ABC/view", home / "x.pth", retries=0, timeout=5)
    message = str(info.value)
    assert "cannot reach Google Drive" in message and "p3m weights import FILE --as NAME" in message
    assert "interrupted" not in message and "\n" not in message
    with pytest.raises(DownloadError, match="p3m weights import FILE --as NAME"):
        transfer.download_file("http://127.0.0.1:9/none.pth", home / "y.pth", retries=0, timeout=5)


def test_a_damaged_cached_checkpoint_is_reported_and_downloaded_again(home, r34_checkpoint, tmp_path):
    """A cached file truncated after it was recorded: `weights list` kept calling it installed
    with the recorded sha256, `weights download` said it was there, and loading it said only
    "truncated or corrupt". Now the list flags it, a download replaces it, and the load error
    says how to replace it."""
    from p3m.models.checkpoints import read_state_dict

    _, payload = r34_checkpoint
    digest = hashlib.sha256(payload).hexdigest()
    with _Server(payload) as server:
        spec = _spec(server.url + "/f.pth", None)  # no registered hash: the recorded one is the reference
        path = hub.download_weights("p3mnet-r34", checkpoint=spec)
        assert hub.weights_status("p3mnet-r34").problem is None
        path.write_bytes(payload[: len(payload) // 2])
        problem = hub.weights_status("p3mnet-r34").problem
        assert problem is not None and problem.startswith("damaged:") and "--force" in problem
        with pytest.raises(CheckpointError, match=r"truncated or corrupt.*p3m weights download p3mnet-r34 --force"):
            read_state_dict(path)
        assert hub.download_weights("p3mnet-r34", checkpoint=spec) == path  # damaged: fetched again
        assert len(server.requests) == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert hub.weights_status("p3mnet-r34").problem is None


def test_a_damaged_cached_checkpoint_fails_weights_path_and_is_replaced_by_import(home, r34_checkpoint):
    """`weights path` printed the damaged file with exit code 0, and the advice "import the file
    again" met "other weights ... are already in the cache; pass --force"."""
    from typer.testing import CliRunner

    from p3m.cli import app

    source, payload = r34_checkpoint
    installed = hub.import_weights(source, "p3mnet-r34")
    installed.write_bytes(payload[:1000])
    result = CliRunner().invoke(app, ["weights", "path", "p3mnet-r34"])
    assert result.exit_code == 1 and "damaged" in result.output
    assert hub.import_weights(source, "p3mnet-r34") == installed  # no --force needed
    assert installed.read_bytes() == payload and hub.weights_status("p3mnet-r34").problem is None


def test_a_folder_given_as_a_checkpoint_is_named_a_folder(home, tmp_path):
    folder = tmp_path / "weights-folder"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        hub.import_weights(folder, "p3mnet-r34")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        hub.resolve_weights(folder)


def test_a_plain_pickle_checkpoint_gets_p3ms_line_without_torch_notes(tmp_path, recwarn):
    """A legacy (non-zip) checkpoint pickled with protocol 4: torch's "Detected pickle protocol"
    UserWarning reached the terminal before p3m's own one-line error."""
    from p3m.models.checkpoints import read_state_dict

    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    with pytest.raises(CheckpointError, match="legacy.pth: holds Python objects that a weights-only load refuses"):
        read_state_dict(path)
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_weights_list_keeps_file_names_and_urls_whole(home):
    """At 80 columns the list folded `p3mnet_pretrained_on_p3m10k.pth` and the download URLs over
    several lines: the names `weights import` and a browser need could not be copied."""
    from typer.testing import CliRunner

    from p3m.cli import app

    result = CliRunner().invoke(app, ["weights", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    spec = hub.weights_status("p3mnet-r34")
    lines = result.output.splitlines()
    assert any(spec.file_name in line for line in lines) and any(spec.url in line for line in lines), result.output
    # COLUMNS=80 is kept when piped too: the columns are stacked in blocks, none dropped.
    headers = [line.split() for line in lines if line.startswith("model")]
    assert all(len(line) <= 80 for line in lines if line.startswith("model") and "source" not in line)
    assert {"checkpoint", "installed", "sha256", "source"} <= {word for header in headers for word in header}
    assert len(headers) > 1


def test_weights_import_prints_the_cache_path_whole_and_help_reads_right(home, r34_checkpoint):
    """At 80 columns the cache path was folded mid-name; usage lines read `{file}`; serve's
    --device said "cpu or cuda" where matte's said "cpu, cuda, cuda:N or mps"."""
    from typer.testing import CliRunner

    from p3m.cli import app
    from p3m.cli._options import DEVICE_OPTION_HELP

    runner = CliRunner()
    result = runner.invoke(app, ["weights", "import", str(r34_checkpoint[0]), "--as", "p3mnet-r34"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert f"p3mnet-r34: {hub.installed_weights('p3mnet-r34')}" in result.output.splitlines()
    usages = {}
    for command in (["weights", "import"], ["export-onnx"], ["matte"], ["serve"]):
        shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
        usages[command[0] if len(command) == 1 else command[1]] = shown
        assert "{" not in shown.split("Usage:")[1].splitlines()[0]
    assert "[OPTIONS] FILE" in usages["import"] and "[OPTIONS] NAME" in usages["export-onnx"]
    assert "[OPTIONS] [INPUTS]..." in usages["matte"]
    assert DEVICE_OPTION_HELP in usages["matte"] and DEVICE_OPTION_HELP in usages["serve"]


def test_import_of_a_damaged_file_names_its_problem_not_force(home, r34_checkpoint, tmp_path):
    """With weights already cached, a truncated file was met with "pass --force"; only with
    --force was it called corrupt. The file is checked first, with or without force."""
    from p3m.errors import CheckpointError

    path, payload = r34_checkpoint
    installed = hub.import_weights(path, "p3mnet-r34")
    truncated = tmp_path / "r34_trunc.pth"
    truncated.write_bytes(payload[: len(payload) // 2])
    for force in (False, True):
        with pytest.raises(CheckpointError, match="truncated or corrupt") as raised:
            hub.import_weights(truncated, "p3mnet-r34", force=force)
        assert "force" not in str(raised.value) and str(truncated) in str(raised.value)
    assert installed.read_bytes() == payload
