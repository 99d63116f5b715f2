"""A patching sweep and attribution with the pairs sharded over 2 gloo ranks equal one process."""

from __future__ import annotations

import torch

from analyses.causal.attribution import attribute
from analyses.causal.distributed import merge_ranks, shard_task
from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from probes.distributed import launch, process_group

N_PAIRS = 9  # odd: the ranks get 4 and 5 pairs, so the weighting by pair count matters
CONFIGS = (PatchingConfig("z"), PatchingConfig("resid_pre", per_position=True, method="noising"))


def _sweeps(loaded, dataset):
    pair = pair_from_task(dataset)
    out = [merge_ranks(patch(loaded, pair, cfg), pair, cfg) for cfg in CONFIGS]
    out.append(merge_ranks(attribute(loaded, pair, CONFIGS[0]), pair, CONFIGS[0]))
    return [(r.table, r.values, r.clean_metric, r.corrupted_metric) for r in out], pair.batch


def _worker():
    torch.set_num_threads(1)
    from data.tasks import load_task
    from probes.models import load_model

    with process_group():
        return _sweeps(load_model("organism"), shard_task(load_task("ioi", N_PAIRS, seed=1)))


def test_two_ranks_equal_one_process():
    from data.tasks import load_task
    from probes.models import load_model

    ranks = launch(_worker, 2)
    one, n = _sweeps(load_model("organism"), load_task("ioi", N_PAIRS, seed=1))
    assert n == N_PAIRS and sorted(ranks[r][1] for r in ranks) == [4, 5]
    for r in (0, 1):
        for (t2, v2, c2, k2), (t1, v1, c1, k1) in zip(ranks[r][0], one):
            torch.testing.assert_close(v2, v1, rtol=1e-5, atol=1e-5)
            assert abs(c2 - c1) < 1e-5 and abs(k2 - k1) < 1e-5
            assert t2[["component", "layer", "head", "position", "method"]].equals(
                t1[["component", "layer", "head", "position", "method"]])
            for col in ("effect", "normalized_effect", "patched_metric"):
                torch.testing.assert_close(torch.tensor(t2[col].to_numpy()),
                                           torch.tensor(t1[col].to_numpy()),
                                           rtol=1e-4, atol=1e-5)
