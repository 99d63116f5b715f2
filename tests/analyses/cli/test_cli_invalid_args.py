"""Every CLI command, fed randomised invalid arguments (issue 16, property test): exit code 2,
one line on stderr, no traceback, no model loaded, and nothing in the run store but failed runs.

Each command lists its ways of being wrong (a value out of range or of the wrong type, a
repeat, a combination of flags that conflict); each seed draws the values of every one of them.
Validation comes before any model work, so no case loads a model (the loader is forbidden).
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.analyses.cli.clihelp import (
    assert_one_line_error,
    forbid_model_loads,
    only_failed_runs,
    run_cli,
)

SEEDS = range(3)
NOT_INTS = ("x", "1.5", "", "1e3", "ten", "0x1f")
NOT_FLOATS = ("nan", "inf", "-inf", "abc", "")
Mutation = Callable[[random.Random, Path], list[str]]


def bad_int(rng: random.Random, lo: int, hi: int | None = None) -> str:
    """An int below ``lo``, above ``hi``, or not an int at all."""
    options = [str(lo - rng.randint(1, 10**6)), rng.choice(NOT_INTS)]
    if hi is not None:
        options.append(str(hi + rng.randint(1, 10**9)))
    return rng.choice(options)


def bad_float(rng: random.Random, lo: float, inclusive: bool = True) -> str:
    """A float below ``lo`` (or equal to it when ``lo`` is excluded), or not a finite float."""
    options = [f"{lo - rng.uniform(1e-3, 100):.4g}", rng.choice(NOT_FLOATS)]
    if not inclusive:
        options.append(str(lo))
    return rng.choice(options)


def a_file(tmp: Path) -> str:
    path = tmp / "a-file"
    path.write_text("not a folder")
    return str(path)


def flag(name: str, value: Callable[[random.Random], str], *extra: str) -> Mutation:
    return lambda rng, tmp: [*extra, name, value(rng)]


def fixed(*args: str) -> Mutation:
    return lambda rng, tmp: list(args)


def heads_twice(rng: random.Random) -> str:
    layer, head = rng.randrange(4), rng.randrange(4)
    return rng.choice([f"L{layer}H{head},{layer}.{head}", f"{layer}.{head},L{layer}H{head}",
                       f"L0H1,L{layer}H{head},L{layer}H{head}"])


def bad_head(rng: random.Random) -> str:
    return rng.choice(["L1X2", "1.x", "H1L2", "1-2", "L1H", "1.2.3"])


#: Wrong for every command with the common options (--device, --runs-dir).
COMMON: list[Mutation] = [
    lambda rng, tmp: ["--device", rng.choice(["banana", "cuda:99", "gpu", "cpu:x", ""])],
    lambda rng, tmp: ["--runs-dir", a_file(tmp)],
]
#: Wrong for every command.
UNKNOWN: Mutation = lambda rng, tmp: [rng.choice(["--bogus", "--n_items", "--devic3"]), "1"]
SAE_LAYER = ["--model", "organism", "--layer", "1"]
COMMANDS: dict[str, tuple[list[str], list[Mutation]]] = {
    "patch": (["patch", "--model", "organism"], [
        flag("--n", lambda r: bad_int(r, 1, 10_000)),
        flag("--seed", lambda r: bad_int(r, 0)),
        flag("--top", lambda r: bad_int(r, 1)),
        flag("--layers", lambda r: r.choice(["1,1", "x", "-1", "", "1,,x", "0, 0"])),
        flag("--task", lambda r: r.choice(["bogus", "IOI", ""])),
        flag("--component", lambda r: r.choice(["heads", "Z", "path_z"])),
        flag("--method", lambda r: r.choice(["attrib", "exact"])),
        lambda r, t: ["--component", "path", "--method",
                      r.choice(["attribution", "attribution-noising"])],
        lambda r, t: ["--receivers", r.choice(["L2H0", "logits", "2.1q"])],
        lambda r, t: ["--component", "path", "--receivers",
                      r.choice(["L2H0,2.0", "bogus", "L2Hx", "L2H0w"])],
        lambda r, t: ["--component", "path", r.choice(["--per-position", "--layers=1"])],
        fixed("--clean", "a b c", "--corrupted", "a b d"),
        fixed("--model", "minilm"),
        fixed("--model", "minilm", "--clean", "The cat sat."),
        fixed("--model", "minilm", "--clean", "a", "--clean", "b", "--corrupted", "c"),
        fixed("--model", "minilm", "--clean", "a", "--corrupted", "b", "--task", "ioi"),
    ]),
    "ablate": (["ablate", "--model", "organism"], [
        fixed(),
        flag("--heads", heads_twice),
        flag("--heads", bad_head),
        flag("--sublayers", lambda r: r.choice(["attn", "mlpX", "attn1,attn1", "block1"])),
        lambda r, t: ["--impairment", r.choice(["--heads=L0H1", "--sublayers=mlp0"])],
        lambda r, t: ["--heads", "L0H1", r.choice(["--k=2", "--n-random=3"])],
        flag("--k", lambda r: bad_int(r, 1), "--impairment"),
        flag("--n-random", lambda r: bad_int(r, 0), "--impairment"),
        flag("--n", lambda r: bad_int(r, 1, 10_000), "--impairment"),
        flag("--seed", lambda r: bad_int(r, 0), "--impairment"),
        flag("--task", lambda r: r.choice(["bogus", "Recall"]), "--impairment"),
        flag("--method", lambda r: r.choice(["noise", "Mean"]), "--impairment"),
        fixed("--model", "minilm", "--heads", "L0H1"),
    ]),
    "report": (["report", "circuit", "--model", "organism"], [
        flag("--n", lambda r: bad_int(r, 2, 10_000)),
        flag("--top-k", lambda r: bad_int(r, 1)),
        flag("--n-random", lambda r: bad_int(r, 0)),
        flag("--seed", lambda r: bad_int(r, 0)),
        flag("--task", lambda r: r.choice(["bogus", "sst2"])),
        flag("--ablation", lambda r: r.choice(["noise", "ZERO"])),
        lambda r, t: ["--out", a_file(t)],
        fixed("--model", "minilm"),
    ]),
    "redundancy": (["redundancy", "--model", "organism"], [
        flag("--max-drop", lambda r: bad_int(r, 0)),
        flag("--repeats", lambda r: bad_int(r, 1)),
        flag("--n-items", lambda r: bad_int(r, 1, 10_000)),
        flag("--head-items", lambda r: bad_int(r, 2), "--heads"),
        fixed("--head-items", "8"),
        fixed("--n-sentences", "8"),
        lambda r, t: ["--random-seeds", *r.choice([["-1"], ["0", "0"], ["x"], ["1", "2", "1"]])],
        flag("--strategy", lambda r: r.choice(["heads", "JOINT"])),
        fixed("--model", "gpt2"),
        fixed("--model", "minilm", "--n-items", "8"),
    ]),
    "demo": (["demo"], [
        flag("--only", lambda r: r.choice(["nope", "probes,nope", ",", "sae,probes,sae"])),
        fixed("--quick", "--only", "sae"),
        flag("--n-sentences", lambda r: bad_int(r, 1)),
        flag("--batch-size", lambda r: bad_int(r, 1)),
        flag("--massive-ratio", lambda r: bad_float(r, 0.0)),
        flag("--n-items", lambda r: bad_int(r, 4, 10_000)),
        flag("--sae-tokens", lambda r: bad_int(r, 100, 10_000_000)),
        flag("--threads", lambda r: bad_int(r, 1)),
        lambda r, t: ["--quick", r.choice(["--n-items=8", "--sae-tokens=500"])],
        lambda r, t: ["--only", "sae", r.choice(["--n-sentences=4", "--massive-ratio=50"])],
    ]),
    "probe": (["probe", "--model", "minilm"], [
        flag("--batch-size", lambda r: bad_int(r, 1)),
        flag("--collapse-threshold", lambda r: r.choice(["0", "1", "1.5", "nan", "-0.2", "x"])),
        flag("--massive-abs", lambda r: bad_float(r, 0.0)),
        flag("--massive-ratio", lambda r: bad_float(r, 0.0)),
        flag("--what", lambda r: r.choice(["entropy,bogus", "", "Entropy", "norms,norms"])),
        lambda r, t: ["--prompts", str(t / "missing.txt")],
    ]),
    "sae train": (["sae", "train", *SAE_LAYER], [
        flag("--layer", lambda r: bad_int(r, 0)),
        flag("--d-sae", lambda r: bad_int(r, 1, 2**20)),
        flag("--k", lambda r: bad_int(r, 1)),
        fixed("--d-sae", "64", "--k", "65"),
        lambda r, t: ["--arch", r.choice(["standard", "jumprelu"]), "--k", "8"],
        lambda r, t: ["--arch", r.choice(["topk", "jumprelu"]), "--l1", "0.5"],
        lambda r, t: ["--arch", r.choice(["topk", "standard"]), r.choice(["--l0=1",
                                                                          "--threshold=0.1"])],
        flag("--l1", lambda r: bad_float(r, 0.0), "--arch", "standard"),
        flag("--l0", lambda r: bad_float(r, 0.0), "--arch", "jumprelu"),
        flag("--threshold", lambda r: bad_float(r, 0.0, inclusive=False), "--arch", "jumprelu"),
        flag("--lr", lambda r: bad_float(r, 0.0, inclusive=False)),
        flag("--batch-tokens", lambda r: bad_int(r, 1)),
        fixed("--batch-tokens", "1024", "--tokens", "1000"),
        flag("--buffer-tokens", lambda r: bad_int(r, 1, 10_000_000)),
        flag("--eval-tokens", lambda r: bad_int(r, 1, 10_000_000)),
        flag("--seed", lambda r: bad_int(r, 0)),
        lambda r, t: ["--from-shards", str(t / "no-shards")],
        lambda r, t: ["--out", a_file(t)],
        flag("--arch", lambda r: r.choice(["gated", "TopK"])),
    ]),
    "sae eval": (["sae", "eval", *SAE_LAYER], [
        flag("--layer", lambda r: bad_int(r, 0)),
        flag("--eval-tokens", lambda r: bad_int(r, 1, 10_000_000)),
        lambda r, t: ["--sae", str(t / "no-sae")],
        flag("--sae", lambda r: r.choice(["sae_lens:release-only", "sae_lens:", "shipped/x"])),
        fixed("--layer", "9"),  # no shipped SAE there
    ]),
    "sae features": (["sae", "features", *SAE_LAYER], [
        flag("--tokens", lambda r: bad_int(r, 1, 10_000_000)),
        flag("--top", lambda r: bad_int(r, 1)),
        flag("--bins", lambda r: bad_int(r, 1)),
        flag("--features", lambda r: r.choice(["x", "1,1", "-1", "1,,2", "3, 3"])),
        lambda r, t: ["--sae", str(t / "no-sae")],
    ]),
    "sae list": (["sae", "list"], []),
    "sae ship": (["sae", "ship"], [
        flag("--layers", lambda r: r.choice(["x", "1,1", "-1", ""])),
        flag("--model", lambda r: r.choice(["bogus", "gpt2"])),
    ]),
    "organism train": (["organism", "train"], [
        flag("--steps", lambda r: bad_int(r, 1)),
        flag("--threads", lambda r: bad_int(r, 1)),
        flag("--seed", lambda r: bad_int(r, 0)),
        flag("--config", lambda r: r.choice(["bogus", "Tiny"])),
        lambda r, t: ["--out", a_file(t)],
        lambda r, t: ["--resume", "--out", str(t / "no-checkpoint")],
    ]),
    "dashboard": (["dashboard"], [
        flag("--port", lambda r: bad_int(r, 1, 65_535)),
        fixed("--host", ""),
    ]),
    "runs": (["runs"], [
        flag("--show", lambda r: r.choice(["../etc", "a/b", "", "no-such-run", "."])),
    ]),
    "models": (["models"], []),
}
NO_COMMON = {"organism train"}  # its options are the trainer's own (no --runs-dir, --device)


def _forbid_work(monkeypatch) -> None:
    forbid_model_loads(monkeypatch)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr("data.organism.train.train", no_work)
    monkeypatch.setattr(subprocess, "call", no_work)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_invalid_arguments_are_one_line_and_write_nothing(command, seed, tmp_path, capsys,
                                                          monkeypatch):
    _forbid_work(monkeypatch)
    base, mutations = COMMANDS[command]
    common = [] if command in NO_COMMON else COMMON
    runs = tmp_path / "runs"
    rng = random.Random(f"{command}/{seed}")
    for i, mutate in enumerate([*mutations, *common, UNKNOWN]):
        tmp = tmp_path / str(i)
        tmp.mkdir()
        extra = mutate(rng, tmp)
        tail = [] if command in NO_COMMON or "--runs-dir" in extra else ["--runs-dir", str(runs)]
        if command == "organism train" and "--out" not in extra:
            extra += ["--out", str(tmp / "organism")]
        argv = [*base, *extra, *tail]
        rc, _, err = run_cli(argv, capsys)
        assert_one_line_error(rc, err, "attnlab", context=argv)
        assert only_failed_runs(runs), argv
