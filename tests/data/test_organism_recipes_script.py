"""scripts/organism_recipes.py (issue 20's recipe experiments) runs and prints its curves."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO_ROOT


def test_recipe_script_prints_family_and_hop_accuracies():
    out = subprocess.run(
        [sys.executable, "scripts/organism_recipes.py", "--reasoning", "dense-at", "--layers", "1",
         "--d-model", "32", "--steps", "204", "--curriculum", "100", "--lookup-end", "150",
         "--every", "102", "--ctx", "112"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["step"] for r in lines] == [102, 204]
    keys = {"induction", "ioi", "recall", "reasoning", "hop_place", "hop_person_cut",
            "hop_person"}
    assert all(keys <= set(r) and all(0 <= r[k] <= 1 for k in keys) for r in lines)
