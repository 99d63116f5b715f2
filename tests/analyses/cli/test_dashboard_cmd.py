"""`attnlab dashboard`: loopback by default, the run store passed on, app located without import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from analyses.cli.commands import dashboard_cmd
from analyses.cli.main import build_parser, main


def test_defaults_bind_loopback_port_8501():
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)


def test_app_path_is_the_entry_file_and_dashboard_is_not_imported():
    sys.modules.pop("dashboard.app", None)
    path = dashboard_cmd.app_path()
    assert path.name == "app.py" and path.parent.name == "dashboard"
    assert "st.navigation" in path.read_text()
    assert "dashboard.app" not in sys.modules


class _FakeServer:
    """Stands in for the streamlit child: records its command line, exits at once."""

    calls: list = []

    def __init__(self, cmd, env):
        self.calls.append((cmd, env))

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


def test_run_starts_streamlit_with_store_and_address(tmp_path, monkeypatch):
    calls = _FakeServer.calls = []
    monkeypatch.setattr(subprocess, "Popen", _FakeServer)
    rc = main(["dashboard", "--port", "8600", "--runs-dir", str(tmp_path / "runs")])
    assert rc == 0
    cmd, env = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4] == str(dashboard_cmd.app_path())
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.address"] == "127.0.0.1" and opts["--server.port"] == "8600"
    assert opts["--browser.gatherUsageStats"] == "false"
    assert env["ATTNLAB_RUNS"] == str((tmp_path / "runs").resolve())


def test_bad_port_is_a_clean_error(capsys):
    assert main(["dashboard", "--port", "70000"]) == 2
    assert "--port must be in 1..65535" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "::1"])
def test_host_is_configurable(host):
    cmd = dashboard_cmd.streamlit_command(dashboard_cmd.app_path(), host, 9000)
    assert cmd[cmd.index("--server.address") + 1] == host


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serving(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigterm_stops_the_streamlit_child(tmp_path):
    """A real `attnlab dashboard`: once streamlit serves, SIGTERM to attnlab ends both."""
    import signal
    import time

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "analyses.cli.main", "dashboard", "--port",
                             str(port), "--runs-dir", str(tmp_path / "runs")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not _serving(port):
            assert proc.poll() is None, "attnlab dashboard exited before serving"
            assert time.monotonic() < deadline, "streamlit did not start within 240 s"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while _serving(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _serving(port), "the streamlit child still serves after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
