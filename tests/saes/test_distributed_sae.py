"""Data-parallel SAE training on 2 gloo ranks: same loss curve and weights as one process,
which itself equals SAE-Lens' own trainer; rank 0's checkpoint resumes in one process."""

from __future__ import annotations

import shutil

import torch

from probes.distributed import launch, process_group
from saes.config import SAETrainConfig
from saes.train import train_on_buffer

# dead_feature_window 3: features die within the 20 steps, so the TopK aux loss (and with it
# the all-reduced firing counts) is part of what must agree
CFG = SAETrainConfig(arch="topk", d_sae=64, k=4, batch_tokens=64, total_tokens=20 * 64,
                     dead_feature_window=3, n_checkpoints=1, lr=3e-3)


def _acts() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(300, 32, generator=g) @ torch.randn(32, 32, generator=g) * 0.5 + 0.1


def _weights(sae) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in sae.state_dict().items()}


def _worker(out: str):
    torch.set_num_threads(1)
    with process_group():
        res = train_on_buffer(_acts(), 1, CFG, "tiny", out)  # parallel under torchrun
        return res.losses, _weights(res.sae), res.n_steps


def _close(a: dict, b: dict, tol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=k)


def test_two_ranks_equal_one_process_and_sae_lens(tmp_path):
    ranks = launch(_worker, 2, str(tmp_path / "two"))
    one = train_on_buffer(_acts(), 1, CFG, "tiny", parallel=True)  # the loop, one process
    sae_lens_run = train_on_buffer(_acts(), 1, CFG, "tiny")  # SAE-Lens' own SAETrainer.fit
    assert len(one.losses) == 20 and one.n_steps == sae_lens_run.n_steps == 20
    assert sae_lens_run.losses == ()
    _close(_weights(one.sae), _weights(sae_lens_run.sae), 1e-5)
    assert one.sae.cfg.metadata.num_dead_features == \
        sae_lens_run.sae.cfg.metadata.num_dead_features > 0
    for r in (0, 1):
        losses, weights, n_steps = ranks[r]
        assert n_steps == 20
        torch.testing.assert_close(torch.tensor(losses), torch.tensor(one.losses),
                                   rtol=1e-4, atol=1e-6)
        _close(weights, _weights(one.sae), 1e-4)
    # rank 0's mid-run checkpoint resumes in one process and ends where 2 processes ended
    again = tmp_path / "again"
    shutil.copytree(tmp_path / "two" / "checkpoints", again / "checkpoints")
    resumed = train_on_buffer(_acts(), 1, CFG, "tiny", again, parallel=True)
    assert 0 < resumed.resumed_from < 20 * 64 and len(resumed.losses) < 20
    assert resumed.n_steps == 20 and (again / "cfg.json").is_file()
    _close(_weights(resumed.sae), ranks[0][1], 1e-4)
