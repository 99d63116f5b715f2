"""Causal analyses on the real SmolLM2-135M (Q4_1): exact patching equals TransformerLens'
own patching, attribution agrees with it, direct-path patching equals a hooks reference, and
the commands pick SmolLM2's tasks (reasoning is not a default: the model does not do it).

The model tests are few small sweeps (2 pairs, a few layers): a full 270-head sweep costs
minutes on CPU even on the fast engine, and TransformerLens' patcher (the reference) far more.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformer_lens import patching as tl_patching

from analyses.causal.attribution import attribute, correlation
from analyses.causal.circuit import CircuitConfig, default_config
from analyses.causal.ioi import abc_pair, task_name_ids
from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from analyses.causal.path_patching import PathPatchingConfig, path_patch
from analyses.causal.task_sets import (
    analysis_tasks,
    check_tasks,
    impairment_note,
    impairment_tasks,
    load_model_task,
)

LAYERS = (0, 29)  # the first layer (the patched pass runs every block) and the last


@pytest.fixture(scope="module")
def ioi():
    return load_model_task("smollm2", "ioi", n=2, seed=0)


@pytest.fixture(scope="module")
def z_sweep(smollm2, ioi):
    """Our exact z denoising sweep of LAYERS on 2 IOI pairs (and its pair)."""
    pair = pair_from_task(ioi)
    return pair, patch(smollm2, pair, PatchingConfig("z", layers=LAYERS))


@pytest.mark.slow
def test_exact_z_sweep_equals_transformer_lens_patching(smollm2, ioi, z_sweep):
    from data.tasks import logit_diff

    pair, ours = z_sweep
    assert ours.engine == "fast"  # engine="auto" takes GQA/RMS/gated MLPs to the fast engine
    assert ours.values.shape == (len(LAYERS), 9)
    # TL's patching runs one full forward per head: check the strongest and weakest head of
    # each layer (2 per layer), with TL's generic patcher on those (layer, head) only.
    picks = [(li, int(ours.values[li].argmax())) for li in range(len(LAYERS))]
    picks += [(li, int(ours.values[li].argmin())) for li in range(len(LAYERS))]
    index = pd.DataFrame([(LAYERS[li], h) for li, h in picks], columns=["layer", "head"])
    model = smollm2.model
    with torch.no_grad():
        _, cache = model.run_with_cache(ioi.clean_tokens,
                                        names_filter=lambda n: n.endswith("attn.hook_z"))
        ref = tl_patching.generic_activation_patch(
            model, ioi.corrupted_tokens, cache, lambda lg: logit_diff(lg, ioi).mean(),
            tl_patching.layer_head_vector_patch_setter, "z", index_df=index)
    mine = torch.stack([ours.values[li, h] for li, h in picks])
    assert torch.allclose(mine, ref.flatten().to(mine.dtype), atol=1e-4, rtol=0)
    assert ours.clean_metric > ours.corrupted_metric + 1  # IOI works on these pairs


@pytest.mark.slow
def test_attribution_correlates_with_exact(smollm2, z_sweep):
    pair, exact = z_sweep
    est = attribute(smollm2, pair, PatchingConfig("z", layers=LAYERS))
    assert est.values.shape == exact.values.shape
    r = correlation(exact.table, est.table)
    assert r > 0.5, r  # measured 0.997 on layers 0, 14, 29 (27 heads)


@pytest.mark.slow
def test_direct_path_equals_hooks_reference(smollm2, ioi):
    """Path patching into the logits (MLPs frozen, the closed form) on the ABC pair with
    SmolLM2's names equals Wang et al.'s frozen forward pass written with TL hooks."""
    model = smollm2.model
    names = task_name_ids(model, ioi)
    assert len(names) > 20 and {int(t) for t in ioi.answer_ids} <= names
    pair = abc_pair(ioi, names, seed=0)
    table = path_patch(smollm2, pair, PathPatchingConfig(method="noising", freeze_mlps=True))
    assert len(table) == 30 * 9 and set(table.receivers) == {"logits"}
    top = table.sort_values("effect").iloc[0]
    senders = [(int(top.layer), int(top["head"])), (14, 3)]
    with torch.no_grad():
        _, base = model.run_with_cache(pair.clean)  # noising: base = clean, source = ABC
        _, src = model.run_with_cache(pair.corrupted)
        for layer, head in senders:
            def freeze(z, hook, layer=layer, head=head):
                z = base[hook.name].clone()
                if hook.layer() == layer:
                    z[:, :, head] = src[hook.name][:, :, head]
                return z

            hooks = [(f"blocks.{la}.attn.hook_z", freeze) for la in range(30)]
            hooks += [(f"blocks.{la}.hook_mlp_out", lambda a, hook: base[hook.name])
                      for la in range(30)]
            want = pair.metric(model.run_with_hooks(pair.clean, fwd_hooks=hooks)).mean()
            got = table[(table.layer == layer) & (table["head"] == head)].patched_metric
            assert float(got.iloc[0]) == pytest.approx(float(want), abs=1e-4)


def test_smollm2_tasks_and_impairment_pairing():
    assert analysis_tasks("smollm2") == ["induction", "ioi", "recall"]  # no reasoning
    assert analysis_tasks("organism") == ["induction", "ioi", "recall", "reasoning"]
    assert impairment_tasks("organism") == ("recall", "reasoning")
    assert impairment_tasks("smollm2") == ("recall", "ioi")
    assert "does not do it" in impairment_note("smollm2", ("recall", "ioi"))
    assert "chosen by the user" in impairment_note("smollm2", ("recall", "induction"))
    assert check_tasks("smollm2", ["reasoning"]) == ("reasoning",)  # asked for: allowed
    with pytest.raises(ValueError, match="distinct tasks"):
        check_tasks("smollm2", ["recall", "recall"])
    with pytest.raises(ValueError, match="from"):
        check_tasks("smollm2", ["capitals"])


def test_report_defaults_bound_the_cost_on_smollm2():
    cfg = default_config("smollm2", task="ioi")
    assert (cfg.n, cfg.exact_pairs, cfg.noising, cfg.position_sweeps, cfg.role_depth) == (
        32, 8, False, False, 1)
    assert default_config("smollm2", n=4).exact_pairs == 4  # a small --n bounds both
    assert default_config("organism", task="ioi", n=None) == CircuitConfig(task="ioi")
    with pytest.raises(ValueError, match="n_exact"):
        default_config("smollm2", n=16, n_exact=20)


@pytest.mark.parametrize(("argv", "needle"), [
    (["report", "circuit", "--model", "smollm2", "--n", "10", "--n-exact", "20"],
     "--n-exact 20 is more than --n 10"),
    (["report", "circuit", "--model", "smollm2", "--impairment-tasks", "recall,capitals"],
     "--impairment-tasks"),
    (["ablate", "--model", "smollm2", "--impairment-tasks", "recall,ioi", "--heads", "L0H1"],
     "--impairment-tasks cannot be combined with --heads/--sublayers"),
])
def test_cli_rejects_bad_smollm2_arguments_before_loading(argv, needle, tmp_path, capsys,
                                                          monkeypatch):
    import probes.models
    from analyses.cli.main import main

    def no_load(*a, **k):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(probes.models, "load_model", no_load)
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"]) == 2
    assert needle in capsys.readouterr().err
