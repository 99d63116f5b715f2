"""The CLI's feedback and defaults: --threads everywhere, defaults in every --help, fast help
and listing commands (no torch import), `sae list` as a table, the redundancy drop plan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from analyses.cli import main as cli
from analyses.cli.main import build_parser, main
from tests.support import REPO_ROOT


def _imports_after(code: str) -> set[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    probe = (f"import sys\n{code}\n"
             "print('HEAVY:' + ','.join(m for m in ('torch', 'transformer_lens', 'sae_lens',"
             " 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300, check=True).stdout.strip().splitlines()
    assert out and out[-1].startswith("HEAVY:"), out[-3:]  # the probe's own last line
    return set(filter(None, out[-1].removeprefix("HEAVY:").split(",")))


def test_help_imports_no_torch():
    """`attnlab --help` builds every parser: none may import torch (it costs seconds)."""
    code = ("from analyses.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert _imports_after(code) == set()


def test_sae_list_reads_cfg_files_only(tmp_path):
    code = f"from analyses.cli.main import main\nmain(['sae', 'list', '--runs-dir', r'{tmp_path}'])"
    assert _imports_after(code) == set()


def test_models_checks_files_without_heavy_imports(tmp_path):
    """`attnlab models` checks files and caches only: no torch, TransformerLens or SAE-Lens."""
    code = f"from analyses.cli.main import main\nmain(['models', '--runs-dir', r'{tmp_path}'])"
    assert _imports_after(code) == set()


def test_suggested_hub_repos_are_transformer_lens_names():
    """The listing's own name -> repository table agrees with TransformerLens' resolver."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    from probes.models import SUGGESTED_HUB_MODELS, SUGGESTED_HUB_REPOS

    assert set(SUGGESTED_HUB_REPOS) == set(SUGGESTED_HUB_MODELS)
    for name, repo in SUGGESTED_HUB_REPOS.items():
        assert get_official_model_name(name) == repo


def test_every_command_has_threads_with_a_default():
    parser = build_parser()
    for argv in (["probe"], ["patch"], ["redundancy", "--model", "organism"], ["demo"],
                 ["sae", "eval", "--layer", "1"], ["report", "circuit"], ["runs"]):
        args = parser.parse_args(argv)
        assert args.threads is None  # not typed: main() fills in default_threads()
        assert parser.parse_args(argv + ["--threads", "3"]).threads == 3


def test_threads_are_set_before_the_command(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        assert main(["runs", "--runs-dir", str(tmp_path), "--threads", "3"]) == 0
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("ATTNLAB_THREADS", "2")
        assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_default_threads_is_half_the_cores_capped(monkeypatch):
    monkeypatch.delenv("ATTNLAB_THREADS", raising=False)
    for cores, want in [(1, 1), (2, 1), (6, 3), (16, cli.MAX_DEFAULT_THREADS), (None, 1)]:
        monkeypatch.setattr(cli.os, "cpu_count", lambda c=cores: c)
        assert cli.default_threads() == want


def test_bad_threads_is_a_usage_error(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def _option_lines(help_text: str) -> dict[str, str]:
    """option -> its help text (argparse's wrapped lines joined)."""
    out, current = {}, None
    for line in help_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            current = stripped.split()[0].rstrip(",")
            out[current] = stripped
        elif current and line.startswith(" " * 10):
            out[current] += " " + stripped
        else:
            current = None
    return out


@pytest.mark.parametrize("command", [["probe"], ["patch"], ["sae", "features"],
                                     ["sae", "export"], ["redundancy"]])
def test_help_states_every_default(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(command + ["--help"])
    opts = _option_lines(capsys.readouterr().out)
    parser_defaults = {"--batch-size": "16", "--collapse-threshold": "0.1", "--top": "10",
                       "--tokens": "20000", "--bins": "20", "--per-file": "128"}
    for opt, text in opts.items():
        if opt in parser_defaults:
            assert parser_defaults[opt] in text and "default" in text, text
    if command == ["probe"]:
        assert "(default: 16)" in opts["--batch-size"]
        assert "Sun et al." in opts["--massive-ratio"] and "1000" in opts["--massive-ratio"]


def test_sae_list_is_a_table(capsys, tmp_path):
    assert main(["sae", "list", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["model", "layer", "arch", "d_in", "d_sae", "k"]
    assert "{" not in out and "}" not in out  # no raw dicts
    organism = [ln for ln in lines if ln.startswith("organism")]
    shipped = json.loads((REPO_ROOT / "data" / "saes" / "recipe.json").read_text())
    assert [int(ln.split()[1]) for ln in organism] == shipped["organism"]["layers"]
    assert all("topk" in ln and "%" in ln for ln in organism)
