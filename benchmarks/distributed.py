"""Benchmark: throughput of hook_z capture and SAE training on 1 vs N processes (torchrun).

    python benchmarks/distributed.py [--nproc 1,2] [--prompts 400] [--steps 60] [--device cpu]

Each configuration runs under torch's elastic launcher (:func:`probes.distributed.launch`,
the engine of ``torchrun``; gloo on CPU, NCCL with ``--device cuda``, one GPU per rank), in
fresh processes, after the model is loaded and every rank has passed a barrier:

- ``capture``: :func:`probes.activation_writer.write_activations` of the organism's layer-1
  ``hook_z`` over ``--prompts`` task prompts (each rank writes its block); tokens/s = real
  tokens written / the slowest rank's wall time;
- ``train``: the data-parallel loop of :func:`saes.train.train_on_buffer`, a TopK SAE (d_in
  64, d_sae 512, k 16) for ``--steps`` steps of a 2048-token global batch; tokens/s = steps x
  batch / wall time.

Each process uses ``--threads`` torch threads (default 1), so N processes use N cores: on a
machine whose cores are shared the N-process figure cannot reach N x. The printed ratio is
the measured speed-up, not a claim.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/X.py`: the repository root, not benchmarks/
    sys.path[0] = str(Path(__file__).resolve().parents[1])

BATCH = 2048


def _prompts(n: int) -> list[str]:
    from data.tasks import load_task

    per = -(-n // 3)
    out: list[str] = []
    for task in ("induction", "ioi", "recall"):
        out += list(load_task(task, per, seed=0).clean_prompts)
    return out[:n]


def capture_worker(out: str, n_prompts: int, threads: int, device: str) -> tuple[float, int]:
    import torch

    from probes.activation_writer import WriterConfig, write_activations
    from probes.distributed import barrier, process_group, rank_device
    from probes.models import load_model

    torch.set_num_threads(threads)
    with process_group(device):
        loaded = load_model("organism", device=rank_device(device))
        prompts = _prompts(n_prompts)
        barrier()
        t0 = time.perf_counter()
        manifest = write_activations(loaded, prompts, out, WriterConfig(layer=1, batch_size=32))
        barrier()
        return time.perf_counter() - t0, int(manifest["n_tokens"])


def train_worker(steps: int, threads: int, device: str) -> tuple[float, int]:
    import torch

    from probes.distributed import barrier, process_group, rank_device
    from saes.config import SAETrainConfig
    from saes.train import train_on_buffer

    torch.set_num_threads(threads)
    with process_group(device):
        g = torch.Generator().manual_seed(0)
        buffer = torch.randn(20_000, 64, generator=g).to(rank_device(device) or "cpu")
        cfg = SAETrainConfig(arch="topk", d_sae=512, k=16, batch_tokens=BATCH,
                             total_tokens=steps * BATCH, n_checkpoints=0)
        train_on_buffer(buffer, 1, cfg, "organism", parallel=True, max_steps=2)  # warm-up
        barrier()
        t0 = time.perf_counter()
        res = train_on_buffer(buffer, 1, cfg, "organism", parallel=True)
        barrier()
        return time.perf_counter() - t0, res.n_tokens


def main(argv: list[str] | None = None) -> int:
    from probes.distributed import launch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", default="1,2", help="process counts to compare")
    p.add_argument("--prompts", type=int, default=400)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    counts = [int(n) for n in args.nproc.split(",")]
    print(f"device {args.device}, {args.threads} thread(s) per process")
    results: dict[str, dict[int, float]] = {"capture": {}, "train": {}}
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            out = launch(capture_worker, n, str(Path(tmp) / "acts"), args.prompts,
                         args.threads, args.device)
        wall, tokens = max(out.values())
        results["capture"][n] = tokens / wall
        print(f"capture  nproc {n}: {tokens} tokens in {wall:.2f} s = {tokens / wall:,.0f} tok/s")
        out = launch(train_worker, n, args.steps, args.threads, args.device)
        wall, tokens = max(out.values())
        results["train"][n] = tokens / wall
        print(f"train    nproc {n}: {tokens} tokens in {wall:.2f} s = {tokens / wall:,.0f} tok/s")
    base = counts[0]
    for what, by_n in results.items():
        print(f"{what} speed-up vs {base} process(es): " + ", ".join(
            f"{n}: {by_n[n] / by_n[base]:.2f}x" for n in counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
