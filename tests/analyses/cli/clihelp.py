"""Helpers of the CLI error tests: run ``attnlab`` in-process, and what a clean error is."""

from __future__ import annotations

from pathlib import Path

from analyses.cli.main import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``attnlab ARGV``; argparse's SystemExit is an exit code."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str, context: object = None) -> None:
    """Exit code 2, exactly one line on stderr, no traceback, and each needle in that line.

    ``context`` (e.g. the argv) is shown when an assertion fails.
    """
    assert rc == 2, (context, rc, err)
    assert "Traceback" not in err, (context, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (context, err)
    for needle in needles:
        assert needle in lines[0], (context, needle, lines[0])


def _set_loader(monkeypatch, loader) -> None:
    # analyses.cli.demo first: importing it binds probes.models.load_model, which must be real
    monkeypatch.setattr("analyses.cli.demo.load_model", loader)
    monkeypatch.setattr("probes.models.load_model", loader)


def forbid_model_loads(monkeypatch) -> None:
    """Make any model load fail the test: arguments must be checked before it."""

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    _set_loader(monkeypatch, no_model)


def use_model(monkeypatch, loaded) -> None:
    """Every model load returns ``loaded`` (a session fixture: loaded once)."""
    _set_loader(monkeypatch, lambda *args, **kwargs: loaded)


def only_failed_runs(root: Path) -> bool:
    """Whether the run store at ``root`` holds nothing but runs marked failed."""
    from data.store import RunStore

    if not root.is_dir():
        return True
    runs = RunStore(root).list_runs()
    return bool((runs["status"] == "failed").all())
