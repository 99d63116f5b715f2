"""Linear probes: planted signals are found, control tasks behave as Hewitt & Liang describe."""

from __future__ import annotations

import numpy as np
import pytest

from probes.linear_probe import LinearProbeConfig, control_labels, fit_probe, probe_layers


def test_control_labels_are_fixed_per_type_and_follow_the_label_distribution():
    rng = np.random.default_rng(0)
    types = rng.integers(0, 500, 20_000)
    labels = np.where(rng.random(20_000) < 0.3, "a", "b")
    ctrl = control_labels(labels, types, seed=1)
    for t in np.unique(types)[:50]:
        assert len(set(ctrl[types == t])) == 1
    per_type = {t: c for t, c in zip(types, ctrl)}
    share_a = np.mean([c == "a" for c in per_type.values()])
    assert share_a == pytest.approx(0.3, abs=0.07)
    assert (control_labels(labels, types, seed=1) == ctrl).all()


@pytest.mark.parametrize("kind", ["logistic", "ridge"])
def test_planted_linear_signal_is_selective(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 16))
    y = (x @ rng.normal(size=16) > 0).astype(int)
    groups = np.arange(800) // 8  # 100 "prompts"
    types = np.arange(800)  # every example its own type: the control cannot be memorised
    r = fit_probe(x, y, groups, types, LinearProbeConfig(kind=kind))
    assert r.test_acc > 0.9
    assert r.control_test_acc < 0.65
    assert r.selectivity > 0.3
    assert r.n_train + r.n_test == 800


def test_memorisable_types_give_low_selectivity():
    # features identify the word type; the label is a function of the type. The control
    # task (random label per type) is then as learnable as the task: selectivity ~ 0.
    rng = np.random.default_rng(1)
    n_types, n = 20, 2000
    types = rng.integers(0, n_types, n)
    x = np.eye(n_types)[types] + 0.01 * rng.normal(size=(n, n_types))
    y = (types % 2).astype(int)
    r = fit_probe(x, y, np.arange(n) // 10, types, LinearProbeConfig(strength=10.0))
    assert r.test_acc > 0.95 and r.control_test_acc > 0.95
    assert abs(r.selectivity) < 0.05


def test_bad_input():
    with pytest.raises(ValueError, match="2 prompts"):
        fit_probe(np.zeros((4, 2)), [0, 1, 0, 1], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="kind"):
        LinearProbeConfig(kind="svm")


@pytest.mark.slow
def test_probe_layers_on_minilm(minilm):
    from data.sentences import builtin_sentences

    loaded = minilm
    prompts = builtin_sentences()[:60]
    # task: is this token a subword continuation ("##...")? special tokens are skipped
    label_fn = lambda toks: [None if t in ("[CLS]", "[SEP]") else t.startswith("##")
                             for t in toks]
    df = probe_layers(loaded, prompts, label_fn, layers=[0, 3], batch_size=32)
    wide = df.pivot_table(index="layer", columns="stat", values="value")
    assert list(wide.index) == [0, 3]
    assert set(df["hook"]) == {"blocks.0.hook_resid_post", "blocks.3.hook_resid_post"}
    assert (wide["test_acc"] >= wide["majority_acc"]).all()
    assert (wide["test_acc"] > 0.9).all()
