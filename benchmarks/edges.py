"""Benchmark: EAP over all edges vs one clean forward + backward of the same model.

    python benchmarks/edges.py [--model organism|smollm2] [--task ioi] [--n 8] [--repeats 3]

Times, best of ``--repeats`` interleaved runs, on the same prompt pairs:
- ``fwd+bwd``: one clean forward with the embeddings made differentiable and one backward
  of the logit difference (no edge hooks), the reference of issue 18;
- ``EAP``: :func:`analyses.causal.edges.eap.edge_attribution` over every edge (one
  corrupted forward, one clean forward + backward with the q/k/v/MLP input hooks, the score
  products);
- ``EAP-IG`` (5 steps), for scale.
Prints each time, the EAP / (fwd+bwd) ratio (issue 18 asks for <= 3x) and peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS (``resource``), which
includes the model and the allocator's cache, so it bounds the working set from above.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analyses.causal.batched import reduce_metric  # noqa: E402
from analyses.causal.edges.eap import EAPConfig, edge_attribution  # noqa: E402
from analyses.causal.edges.graph import build_graph  # noqa: E402
from analyses.causal.edges.tasks import load_edge_task  # noqa: E402
from analyses.causal.patching import pair_from_task  # noqa: E402
from probes.hooks import scoped_hooks  # noqa: E402
from probes.models import load_model  # noqa: E402


def fwd_bwd(model, pair) -> None:
    def entry(act):
        return act.detach().requires_grad_(True)

    with torch.enable_grad(), scoped_hooks(model, {"blocks.0.hook_resid_pre": entry}):
        reduce_metric(pair.score(model(pair.clean))).backward()
    model.zero_grad(set_to_none=True)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device=args.device)
    model = loaded.model
    model.requires_grad_(False)
    ds = load_edge_task(loaded.name, args.task, args.n, 0)
    pair = pair_from_task(ds)
    pair = type(pair)(pair.clean.to(args.device), pair.corrupted.to(args.device), pair.metric,
                      pair.task, score_pos=pair.score_pos)
    graph = build_graph(model)
    fwd_bwd(model, pair)
    edge_attribution(model, pair)  # warm-up
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t_ref, t_eap, t_ig = [], [], []
    for _ in range(args.repeats):  # interleaved
        t_ref.append(best(lambda: fwd_bwd(model, pair), 1))
        t_eap.append(best(lambda: edge_attribution(model, pair), 1))
        t_ig.append(best(lambda: edge_attribution(model, pair, EAPConfig("eap-ig", 5)), 1))
    ref, eap, ig = min(t_ref), min(t_eap), min(t_ig)
    print(f"model {loaded.name} ({args.device}, {args.threads} thread(s)), task {args.task}, "
          f"{args.n} pairs x {ds.n_pos} tokens, {graph.n_edges} edges")
    print(f"fwd+bwd  {ref * 1e3:9.1f} ms")
    print(f"EAP      {eap * 1e3:9.1f} ms  ({eap / ref:.2f}x fwd+bwd)")
    print(f"EAP-IG 5 {ig * 1e3:9.1f} ms  ({ig / ref:.2f}x fwd+bwd)")
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB (CUDA allocated)")
    else:
        print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
              "(process peak RSS)")


if __name__ == "__main__":
    main()
