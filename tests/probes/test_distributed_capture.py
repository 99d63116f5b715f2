"""hook_z capture on 2 gloo ranks: per-rank stores, resumable per rank, read as one store that
equals the one-process store row for row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from probes.activation_writer import ActivationShards, WriterConfig, write_activations
from probes.distributed import barrier, launch, process_group
from saes.shards import read_hook_z

CFG = WriterConfig(layer=1, shard_tokens=40, batch_size=3)


def _prompts() -> list[str]:
    from data.tasks import load_task

    return list(load_task("induction", 5, seed=2).clean_prompts) + \
        list(load_task("recall", 6, seed=2).clean_prompts)


def _mtimes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(path.glob("*.safetensors"))}


def _worker(out: str):
    torch.set_num_threads(1)
    from probes.models import load_model

    with process_group() as info:
        loaded, path = load_model("organism"), Path(out)
        first = write_activations(loaded, _prompts(), path, CFG)
        barrier()
        # rank 1's store is lost (as if it was killed before writing); rank 0's is kept
        if info.rank == 1:
            shutil.rmtree(path / "rank_001")
        else:
            (path / "manifest.json").unlink()
        kept = _mtimes(path / "rank_000")
        barrier()
        second = write_activations(loaded, _prompts(), path, CFG)
        return first, second, kept, _mtimes(path / "rank_000"), _buffer(loaded)


def _buffer(loaded) -> torch.Tensor:
    """The SAE trainer's live hook_z buffer (split over the ranks under torchrun)."""
    from probes.tokens import tokenize
    from saes.activations import activation_buffer_from_tokens

    return activation_buffer_from_tokens(loaded, 1, tokenize(loaded, _prompts()), 10_000, 4)


def test_two_ranks_equal_one_process(tmp_path):
    from probes.models import load_model

    ranks = launch(_worker, 2, str(tmp_path / "two"))
    one = write_activations(load_model("organism"), _prompts(), tmp_path / "one", CFG)
    first, second, kept_before, kept_after, buffer = ranks[0]
    assert first == second == ranks[1][1]
    assert kept_before == kept_after and len(kept_before) >= 1  # rank 0 did not rewrite
    assert [r["dir"] for r in first["ranks"]] == ["rank_000", "rank_001"]
    assert first["n_tokens"] == one["n_tokens"] and first["complete"]
    two_rows = ActivationShards(tmp_path / "two").load_all()
    torch.testing.assert_close(two_rows, ActivationShards(tmp_path / "one").load_all(),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(read_hook_z(tmp_path / "two", layer=1, model="organism"),
                               two_rows)
    # the SAE trainer's live buffer, collected by both ranks, equals the one-process one
    torch.testing.assert_close(buffer, _buffer(load_model("organism")), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ranks[1][4], buffer)
    assert buffer.shape == two_rows.shape
    # finished: a one-process call on the same folder has nothing left to do
    assert write_activations(load_model("organism"), _prompts(), tmp_path / "two",
                             CFG)["n_tokens"] == first["n_tokens"]


def test_unfinished_distributed_store_says_how_to_finish(tmp_path):
    (tmp_path / "rank_000").mkdir()
    with pytest.raises(FileNotFoundError, match="same number of processes"):
        ActivationShards(tmp_path)
