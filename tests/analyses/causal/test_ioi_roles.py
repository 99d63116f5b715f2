"""IOI roles: the sign each role must have under noising, and the check of every head against
Wang et al.'s attention definitions (recomputed here from TransformerLens' own cache)."""

from __future__ import annotations

import pytest
import torch

from analyses.causal.ioi import (
    ROLE_RULES,
    abc_pair,
    check_role,
    ioi_circuit,
    name_positions,
    organism_name_ids,
)
from analyses.causal.patching import PatchPair
from data.tasks import load_task

A, B, C, D = 10, 11, 12, 13  # name ids of a made-up vocabulary


def test_name_positions_of_a_hand_made_pair():
    # <bos> A and B went , A gave it to | S = A (replaced by C, D in the ABC run), IO = B
    clean = torch.tensor([[0, A, 1, B, 2, 3, A, 4, 5, 6], [0, B, 1, A, 2, 3, A, 4, 5, 6]])
    corr = clean.clone()
    corr[0, 1], corr[0, 6], corr[1, 3], corr[1, 6] = C, D, C, D
    pair = PatchPair(clean, corr, lambda x: x.sum())
    pos = name_positions(pair, {A, B, C, D})
    assert pos.s1.tolist() == [1, 3] and pos.s2.tolist() == [6, 6]
    assert pos.io.tolist() == [3, 1] and pos.end.tolist() == [9, 9]


def att(**w):
    base = {"end->io": 0.0, "end->s2": 0.0, "s2->s1": 0.0, "s2->s1+1": 0.0, "s2->io": 0.0,
            "uniform@end": 0.1, "uniform@s2": 0.2}
    return {**base, **{k.replace("_", "->").replace("plus1", "+1"): v for k, v in w.items()}}


@pytest.mark.parametrize("role,weights,fits", [
    ("name_mover", {"end_io": 0.6, "end_s2": 0.1}, True),
    ("name_mover", {"end_io": 0.1, "end_s2": 0.6}, False),
    ("name_mover", {"end_io": 0.05, "end_s2": 0.01}, False),  # below uniform (0.1)
    ("negative_name_mover", {"end_io": 0.5}, True),
    ("s_inhibition", {"end_s2": 0.5, "end_io": 0.2}, True),
    ("s_inhibition", {"end_s2": 0.2, "end_io": 0.5}, False),
    ("induction_or_duplicate", {"s2_s1plus1": 0.7, "s2_io": 0.1}, True),
    ("induction_or_duplicate", {"s2_s1": 0.3, "s2_io": 0.1}, True),
    ("induction_or_duplicate", {"s2_s1": 0.1, "s2_io": 0.4}, False),
])
def test_check_role_compares_what_wang_et_al_describe(role, weights, fits):
    ok, note = check_role(role, att(**weights))
    assert ok is fits
    assert ("does not fit" in note) is (not fits) and "uniform" in note


@pytest.mark.slow
def test_organism_roles_have_their_sign_and_checked_attention(organism):
    ds = load_task("ioi", 16, 0)
    res = ioi_circuit(organism, ds, k=2, depth=2)
    roles = res.roles
    assert set(roles.method) == {"noising"} and len(roles) >= 1
    for r in roles.itertuples():
        sign, _ = ROLE_RULES[r.role]
        assert r.effect * sign > 0, f"{r.role} L{r.layer}H{r.head} has effect {r.effect}"
    # the attention numbers, from TL's cache of the clean prompts
    pair = abc_pair(ds, organism_name_ids(organism.model))
    pos = name_positions(pair, organism_name_ids(organism.model))
    _, cache = organism.model.run_with_cache(pair.clean)
    b = torch.arange(pair.batch)
    for r in roles.itertuples():
        pat = cache["pattern", r.layer][:, r.head]  # (batch, pos, key_pos)
        numbers = dict(item.rsplit(" ", 1) for item in r.attention.split(", "))
        assert float(numbers["end->io"]) == pytest.approx(
            float(pat[b, pos.end, pos.io].mean()), abs=1e-3)
        assert float(numbers["end->s2"]) == pytest.approx(
            float(pat[b, pos.end, pos.s2].mean()), abs=1e-3)
        # the note is judged on the unrounded numbers (the string's 3 decimals can move the
        # note's 2-decimal rounding: END->S2 ~0.005 on the 6-layer organism)
        measured = {k: float(v) for k, v in numbers.items()}
        measured.update({"end->io": float(pat[b, pos.end, pos.io].mean()),
                         "end->s2": float(pat[b, pos.end, pos.s2].mean())})
        fits, note = check_role(r.role, measured)
        assert r.fits == fits and r.note == note
