"""Resuming SAE training (issue 16, failures 1 and 6): a checkpoint is used only when it was
made with the same model, layer, architecture, sizes and training settings; a resumed run
counts its steps exactly; the trainer state is loaded without executing pickled code."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from tests.support import REPO_ROOT
from tests.support.tiny import random_tokens, tiny_loaded


def small_cfg(**kw):
    from saes.config import SAETrainConfig

    base = dict(arch="topk", d_sae=64, k=4, batch_tokens=32, total_tokens=32 * 40,
                n_checkpoints=3, dead_feature_window=20, lr=3e-3)
    base.update(kw)
    return SAETrainConfig(**base)


@pytest.fixture(scope="module")
def acts():
    from saes.activations import collect_hook_z

    return collect_hook_z(tiny_loaded(), random_tokens(), layer=1).z.flatten(1)


@pytest.fixture(scope="module")
def trained(acts, tmp_path_factory):
    """One finished run with its mid-run checkpoints, and its result."""
    from saes.train import train_on_buffer

    out = tmp_path_factory.mktemp("sae") / "run"
    return out, train_on_buffer(acts, 1, small_cfg(), "tiny", out)


def test_resume_counts_steps_exactly_and_refuses_other_settings(acts, trained, tmp_path):
    """Failure 1: a resumed run counts every step, and a checkpoint made with other settings
    (layer, k, d_sae, model, training settings) is refused, naming the fields and --no-resume.
    """
    import shutil

    from saes.train import latest_checkpoint, train_on_buffer

    out, full = trained
    assert full.n_steps == 40
    again = tmp_path / "again"
    shutil.copytree(out, again)
    ckpt = latest_checkpoint(again / "checkpoints")
    assert ckpt is not None and 0 < int(ckpt.name) < 40 * 32  # an automatic mid-run one
    resumed = train_on_buffer(acts, 1, small_cfg(), "tiny", again)
    assert resumed.resumed_from == int(ckpt.name)
    assert resumed.n_steps == full.n_steps == 40  # SAE-Lens saves its step count one short
    for name, p in full.sae.state_dict().items():
        assert torch.allclose(p, resumed.sae.state_dict()[name], atol=1e-6), name

    before = (out / "cfg.json").read_text()
    cases = [
        (dict(layer=0, cfg=small_cfg(k=8)), ["layer", "k"]),
        (dict(cfg=small_cfg(d_sae=32)), ["d_sae"]),
        (dict(model_name="other"), ["model"]),
        (dict(cfg=small_cfg(lr=1e-3, arch="standard")), ["arch", "lr"]),
    ]
    for change, fields in cases:
        kw = dict(layer=1, cfg=small_cfg(), model_name="tiny") | change
        with pytest.raises(ValueError, match="--no-resume") as exc:
            train_on_buffer(acts, kw["layer"], kw["cfg"], kw["model_name"], out)
        message = str(exc.value)
        assert "\n" not in message
        for field in fields:
            assert re.search(rf"\b{field}\b", message), (field, message)
    assert (out / "cfg.json").read_text() == before  # nothing was trained or saved
    fresh = train_on_buffer(acts, 0, small_cfg(k=8), "tiny", tmp_path / "again", resume=False)
    assert fresh.resumed_from == 0 and fresh.n_steps == 40


def test_checkpoint_without_its_configuration_is_refused(acts, trained, tmp_path):
    import shutil

    from saes.train import latest_checkpoint, train_on_buffer

    out, _ = trained
    old = tmp_path / "old"
    shutil.copytree(out, old)
    ckpt = latest_checkpoint(old / "checkpoints")
    (ckpt / "attnlab_train_config.json").unlink(missing_ok=True)  # as older attnlab wrote
    with pytest.raises(ValueError, match="--no-resume"):
        train_on_buffer(acts, 1, small_cfg(), "tiny", old)


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_loads_the_trainer_state_without_running_pickled_code(acts, trained, tmp_path):
    """Failure 6: the trainer state is loaded weights-only (no code execution), and the
    torch floor is one whose torch.load defaults to weights_only=True (torch 2.6)."""
    import shutil

    from saes.train import latest_checkpoint, train_on_buffer

    out, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    ckpt = latest_checkpoint(bad / "checkpoints")
    marker = tmp_path / "pwned"
    state = ckpt / "trainer_state.pt"
    with state.open("wb") as fh:
        pickle.dump({"n_training_samples": _Exploit(marker)}, fh)
    with pytest.raises(ValueError, match=r"trainer_state\.pt.*--no-resume"):
        train_on_buffer(acts, 1, small_cfg(), "tiny", bad)
    assert not marker.exists()

    text = (REPO_ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert floor and tuple(map(int, floor.groups())) >= (2, 6), floor


@pytest.mark.slow
def test_cli_resume_with_other_settings_is_one_line_and_trains_nothing(
        organism, tmp_path, capsys, monkeypatch):
    """Failure 1 as the issue reproduces it: `sae train` twice into one --out."""
    from analyses.cli.main import main
    from tests.analyses.cli.clihelp import use_model

    use_model(monkeypatch, organism)
    out = tmp_path / "sae"
    common = ["sae", "train", "--model", "organism", "--arch", "topk", "--tokens", "4096",
              "--batch-tokens", "256", "--buffer-tokens", "2000", "--eval-tokens", "200",
              "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]
    assert main([*common, "--layer", "1", "--d-sae", "32", "--k", "4"]) == 0
    capsys.readouterr()
    before = (out / "cfg.json").read_text()

    def no_collection(*a, **k):
        raise AssertionError("activations were collected before the checkpoint was checked")

    monkeypatch.setattr("saes.activations.activation_buffer_from_tokens", no_collection)
    for change, fields in [(["--layer", "2", "--d-sae", "32", "--k", "8"], ["layer", "k"]),
                           (["--layer", "1", "--d-sae", "64", "--k", "4"], ["d_sae"])]:
        assert main([*common, *change]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "--no-resume" in err and all(re.search(rf"\b{f}\b", err) for f in fields), err
    assert (out / "cfg.json").read_text() == before
