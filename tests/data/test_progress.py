"""data.progress: bars and phases draw on a terminal only (or when forced), never into a pipe."""

from __future__ import annotations

import io
import time

from data import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_interactive_follows_stderr_and_the_env(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert not progress.interactive()
    monkeypatch.setattr(progress.sys, "stderr", _Tty())
    assert progress.interactive()
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.interactive()
    monkeypatch.setenv(progress.ENV, "1")
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    assert progress.interactive()


def test_quiet_off_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    err = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", err)
    monkeypatch.setattr(progress, "PHASE_DELAY_S", 0.0)
    assert list(progress.bar(range(5), total=5, desc="x")) == [0, 1, 2, 3, 4]
    with progress.phase("working"):
        time.sleep(0.7)
    assert err.getvalue() == ""


def test_bar_shows_eta_and_phase_shows_time_on_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    err = _Tty()
    monkeypatch.setattr(progress.sys, "stderr", err)
    monkeypatch.setattr(progress, "PHASE_DELAY_S", 0.0)
    for _ in progress.bar(range(3), total=3, desc="steps"):
        pass
    drawn = err.getvalue()  # tqdm with a total: "steps: 0%| | 0/3 [elapsed<ETA, rate]"
    assert "steps" in drawn and "/3 [" in drawn and "<" in drawn
    err.truncate(0)
    with progress.phase("evaluating"):
        time.sleep(1.2)  # the phase line is redrawn every 0.5 s
    assert "evaluating ... " in err.getvalue() and " s" in err.getvalue()
    assert err.getvalue().endswith("\r\033[K")  # the line is cleared when the phase ends
