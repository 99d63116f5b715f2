"""Probes on 2 gloo processes (torch's elastic launcher) equal the one-process run."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from probes.accumulators import Reservoir, RunningMoments
from probes.distributed import launch, process_group, rank_info, shard_range
from probes.massive import MassiveConfig
from probes.pipeline import ProbeConfig, run_probes

CONFIG = ProbeConfig(massive=MassiveConfig(abs_threshold=1.0, ratio_threshold=4.0))
KEYS = {"entropy": ["layer", "head", "stat"], "head_norms": ["layer", "head", "stat"],
        "massive": ["layer", "prompt", "position", "dim"], "massive_summary": ["layer", "stat"],
        "sinks": ["layer", "head", "stat"], "sink_rate": ["layer"]}
EXACT_STATS = {"count", "n_queries", "n_sequences", "n_delimiter_queries", "bound_violations",
               "weight_bound_violations", "collapsed", "min", "max", "top1_max"}


def _prompts() -> list[str]:
    from data.tasks import load_task

    out: list[str] = []
    for task, n in (("ioi", 5), ("induction", 4), ("recall", 4)):
        out += list(load_task(task, n, seed=3).clean_prompts)
    return out


def _probe_worker() -> dict:
    torch.set_num_threads(1)
    from probes.models import load_model

    with process_group() as info:
        assert info.world_size == 2
        return run_probes(load_model("organism"), _prompts(), batch_size=3, config=CONFIG)


def _sorted(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df.sort_values(KEYS[name], kind="stable").reset_index(drop=True)


def test_two_ranks_equal_one_process():
    from probes.models import load_model

    ranks = launch(_probe_worker, 2)
    one = run_probes(load_model("organism"), _prompts(), batch_size=3, config=CONFIG)
    assert len(one["massive"]) > 0  # the comparison below covers real rows
    for r in (0, 1):
        assert set(ranks[r]) == set(one)
        for name, want in one.items():
            got, want = _sorted(ranks[r][name], name), _sorted(want, name)
            pd.testing.assert_frame_equal(got.drop(columns="value", errors="ignore"),
                                          want.drop(columns="value", errors="ignore"))
            if "value" not in want:
                continue
            if "stat" in want:
                exact = want["stat"].isin(EXACT_STATS)
                assert got["value"][exact].equals(want["value"][exact]), name
            pd.testing.assert_series_equal(got["value"], want["value"], rtol=1e-9, atol=1e-12)


def test_shard_range_covers_every_item_once_in_order():
    from probes.distributed import RankInfo

    for n, world in ((7, 3), (2, 2), (10, 4)):
        blocks = [shard_range(n, RankInfo(r, world, r)) for r in range(world)]
        assert [i for b in blocks for i in range(b.start, b.stop)] == list(range(n))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    with pytest.raises(ValueError, match="--nproc"):
        shard_range(1, RankInfo(0, 2, 0))
    assert rank_info() == (0, 1, 0)  # no process group in the test process


def test_moments_merge_equals_one_pass():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(101, 3, generator=g, dtype=torch.float64) * 5 + 2
    a, b, whole = RunningMoments(), RunningMoments(), RunningMoments()
    a.add(x[:40]), b.add(x[40:]), whole.add(x)
    a.merge_state(b.state())
    m = a.moments()
    assert m.count == 101
    torch.testing.assert_close(m.mean, x.mean(0))
    torch.testing.assert_close(m.std, x.std(0, correction=0))
    assert torch.equal(m.min, x.amin(0)) and torch.equal(m.max, x.amax(0))


def test_reservoir_merge_is_the_bottom_k_of_the_union():
    g = torch.Generator().manual_seed(1)
    r1, r2 = Reservoir(2, k=10, seed=1), Reservoir(2, k=10, seed=2)
    r1.add(torch.randn(2, 30, generator=g)), r2.add(torch.randn(2, 25, generator=g))
    k1, v1 = r1.state()
    k2, v2 = r2.state()
    keys, vals = torch.cat([k1, k2], 1), torch.cat([v1, v2], 1)
    r1.merge_state((k2, v2))
    for grp in range(2):  # independent: sort the union by key, keep the 10 smallest
        order = keys[grp].argsort()[:10]
        assert sorted(r1.state()[1][grp].tolist()) == sorted(vals[grp, order].tolist())
