"""The circuit report's written readout: receivers in words, roles with their sign and fit."""

from __future__ import annotations

import pandas as pd

from analyses.reports.readout import _roles, receivers_words


def test_receivers_in_words():
    assert receivers_words("logits") == "the logits (direct paths)"
    assert receivers_words("L2H0(q) L2H1(q) L2H3(q)") == "the queries of L2H0, L2H1 and L2H3"
    assert receivers_words("2.0(q) 2.1(q)") == "the queries of L2H0 and L2H1"  # IOI-paper form
    assert receivers_words("L3H1(kv)") == "the keys and values of L3H1"
    assert receivers_words("L2H0(q) L3H1(kv)") == ("the queries of L2H0 and the keys and values "
                                                    "of L3H1")


def test_roles_readout_states_sign_and_fit():
    roles = pd.DataFrame({
        "role": ["name_mover", "name_mover", "s_inhibition"], "layer": [2, 2, 1],
        "head": [0, 1, 2], "effect": [-0.9, -0.3, -0.1], "normalized_effect": [-0.27, -0.1, -0.03],
        "receivers": ["logits", "logits", "L2H0(q) L2H1(q)"], "fits": [True, False, False]})
    text = " ".join(_roles(roles))
    assert "negative normalized effect means the head's path carries" in text
    assert "paths into the logits (direct paths): L2H0 name mover (-0.27) and L2H1 name mover " \
           "(-0.10)." in text
    assert "paths into the queries of L2H0 and L2H1: L1H2 s inhibition (-0.03)." in text
    assert "1 of the 3 (L2H0) also attend" in text and "path effects only" in text
    none = " ".join(_roles(roles.assign(fits=False)))
    assert "None of the 3 attends as Wang et al.'s" in none
