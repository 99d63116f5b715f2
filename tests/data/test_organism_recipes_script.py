"""scripts/organism_recipes.py (issue 20's recipe experiments) runs and prints its curves."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO_ROOT


def test_recipe_script_prints_family_and_hop_accuracies():
    out = subprocess.run(
        # every phase: induction only to step 8, one-hop rows to 16, then the mix
        [sys.executable, "scripts/organism_recipes.py", "--reasoning", "dense-at", "--layers", "1",
         "--d-model", "32", "--steps", "24", "--warmup", "4", "--curriculum", "8",
         "--lookup-end", "16", "--every", "12", "--ctx", "112"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["step"] for r in lines] == [12, 24]
    keys = {"induction", "ioi", "recall", "reasoning", "hop_place", "hop_person_cut",
            "hop_person"}
    assert all(keys <= set(r) and all(0 <= r[k] <= 1 for k in keys) for r in lines)


def test_dense_at_rows_ask_is_at_for_the_first_link_only():
    import importlib.util
    import random

    from data.organism.world import make_world

    spec = importlib.util.spec_from_file_location(
        "organism_recipes", REPO_ROOT / "scripts" / "organism_recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    world, rng = make_world(0, 300), random.Random(0)
    n_at = 0
    for _ in range(200):
        words = recipes.dense_at_text(rng, world, two_hop=True, n_at=2)
        facts = {words[i]: words[i + 3] for i in range(len(words) - 3)
                 if words[i + 1:i + 3] == ["is", "in"] and (i == 0 or words[i - 1] == ".")}
        for i in range(len(words) - 4):
            if words[i] == "so" and words[i + 3] == "at":
                n_at += 1
                assert words[i + 1] in world.names and words[i + 4] == facts[words[i + 1]]
    assert n_at > 200
