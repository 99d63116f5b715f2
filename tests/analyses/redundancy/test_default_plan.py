"""The default drop plan: half the model's layers per strategy (He et al.), stated by the CLI."""

from __future__ import annotations

from types import SimpleNamespace

from analyses.cli.commands.redundancy_cmd import plan_line
from analyses.redundancy.plans import candidates, check_max_drop, default_max_drop


def test_half_the_layers_and_never_more_than_a_strategy_can():
    for n_layers, want in [(1, 1), (4, 2), (6, 3), (30, 15), (31, 15)]:
        cfg = SimpleNamespace(n_layers=n_layers, attn_only=False)
        assert default_max_drop(cfg) == want
        for strategy in ("attn", "mlp", "block", "joint"):
            assert want < len(candidates(cfg, strategy)) or n_layers == 1
            assert check_max_drop(cfg, strategy, want) == want


def test_the_plan_is_printed_in_words():
    args = SimpleNamespace(max_drop=2, iterative=True, random_seeds=[0, 1])
    line = plan_line(args, SimpleNamespace(n_layers=4))
    assert line == ("plan: drop up to 2 component(s) per strategy (one-shot and iterative, "
                    "against random drops with seeds 0, 1) of the 4-layer model; --max-drop "
                    "changes it")
