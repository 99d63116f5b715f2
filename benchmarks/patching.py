"""Benchmark: batched exact head sweep vs transformer_lens.patching vs attribution patching.

One run, same prompts, same metric (the task's logit difference): the per-head output (z,
all positions) sweep by

1. ``analyses.causal.patching.patch`` (the fast engine where it applies; also timed with the hook
   engine),
2. ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos`` (one forward per head;
   its clean ``run_with_cache`` is included, as our two baseline runs are),
3. ``analyses.causal.attribution.attribute`` (one forward + backward, one forward).

and, with ``--model smollm2`` (or ``--attribution-all``), attribution patching of every head
and sublayer at once (z, q, k, v with AtP*'s q/k fix, attn_out, mlp_out:
``attribute_many``) against one forward + backward pass of the same prompts, and the peak
memory of each sweep (allocations counted by ``torch.profiler``). Every run also prints the
peak memory of that all-at-once attribution unchunked and split into chunks of
``--chunk-pairs`` prompt pairs (``attribute_many(chunk_pairs=...)``, issue 18) and its wall
time, beside the chunk size :func:`analyses.causal.attribution.pairs_per_chunk` picks for the
256 MB budget (``--chunks-only``: only that).
On SmolLM2 the hook-engine sweep is skipped (minutes; ``--hooks`` adds it) and
TransformerLens' FLOPs are counted on one forward pass times the number of passes its sweep
runs (one per head, plus its clean run).

For each batch size in ``--n`` it prints wall times (best of interleaved repeats), ratios,
the floating-point operations of ours and of TransformerLens' sweep (counted by
``torch.utils.flop_counter``: their ratio is the speedup exact patching gets at equal
arithmetic efficiency; beyond it, speed comes only from doing the same arithmetic faster),
the max |ours - TL| and the attribution-vs-exact correlation.
Goal (issue 8): ours >= 20x faster than TL on CPU, <= 2x attribution.

    python benchmarks/patching.py --model organism --task ioi --n 1,8,32
    python benchmarks/patching.py --random   # a wider random model (d_model 192), random prompts
    python benchmarks/patching.py --model smollm2 --n 4 --repeats 1
    python benchmarks/patching.py --model smollm2 --n 4,8 --chunk-pairs 1,2,4 --chunks-only
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python benchmarks/X.py``, Python puts benchmarks/ first on sys.path, where this
# folder's probes.py would shadow the ``probes`` package: put the repository root there.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import os
import time
from typing import NamedTuple

os.environ.setdefault("TQDM_DISABLE", "1")  # transformer_lens.patching's per-head progress bar

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi")
    p.add_argument("--n", default="1,8,32", help="prompt pairs: one count or a comma list")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=5,
                   help="interleaved timing rounds; each times ours 5 times, TL once (best kept)")
    p.add_argument("--hooks", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the hook engine (default: on, except for smollm2)")
    p.add_argument("--attribution-all", action=argparse.BooleanOptionalAction, default=None,
                   help="time attribution of all heads/sublayers vs one forward+backward and "
                   "measure peak memory (default: on for smollm2)")
    p.add_argument("--chunk-pairs", default="1,4",
                   help="chunk sizes (prompt pairs) whose attribution peak memory is printed")
    p.add_argument("--chunks-only", action="store_true",
                   help="print only the chunked attribution's peak memory and wall time")
    p.add_argument("--random", action="store_true",
                   help="a random 4-layer model with d_model 192 (3x the organism's) and random "
                   "prompts (no checkpoint)")
    return p.parse_args(argv)


def random_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=4, d_model=192, n_heads=6, d_head=32, d_mlp=768,
                                  n_ctx=64, d_vocab=428, act_fn="gelu", normalization_type="LN",
                                  seed=0, device="cpu")
    return HookedTransformer(cfg).eval()


def random_pair(n: int):
    from analyses.causal.patching import PatchPair

    g = torch.Generator().manual_seed(0)
    clean = torch.randint(1, 428, (n, 16), generator=g)
    corrupted = clean.clone()
    corrupted[:, 5] = torch.randint(1, 428, (n,), generator=g)
    ans = torch.randint(1, 428, (n, 2), generator=g)

    def metric(logits):
        last = logits[:, -1]
        return (last.gather(1, ans[:, :1]) - last.gather(1, ans[:, 1:]))[:, 0]

    return PatchPair(clean, corrupted, metric, task="random")


def task_pair(task: str, n: int, model: str = "organism"):
    from analyses.causal.patching import pair_from_task
    from analyses.causal.task_sets import load_model_task

    return pair_from_task(load_model_task(model, task, n=n, seed=0))


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_mb(fn) -> float:
    """Peak of the CPU memory allocated by torch while ``fn`` runs (MiB above the start):
    the running sum of the allocation events ``torch.profiler`` records, in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # allocations are charged to operators (self, not their children's again), frees to
    # "[memory]" events
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage),
                    key=lambda e: e.time_range.start)
    level = peak = 0
    for event in events:
        level += event.self_cpu_memory_usage
        peak = max(peak, level)
    return peak / 2**20


ALL_COMPONENTS = ("z", "q", "k", "v", "attn_out", "mlp_out")


class Bench(NamedTuple):
    """One batch size: best times (s) and results per sweep, and the FLOPs of ours and TL's."""

    times: dict[str, float]  # keys: ours, hooks, attr, tl (+ attr_all, fwd_bwd)
    out: dict[str, object]  # the same keys: PatchingResult or TL's (layer, head) tensor
    flops_ours: int
    flops_tl: int
    peaks: dict[str, float]  # MiB, keys ours, tl (+ attr_all)


def bench(model, pair, rounds: int, hooks: bool = True, attr_all: bool = False) -> Bench:
    """Times, FLOPs and results of the sweeps on one pair, rounds interleaved."""
    import transformer_lens.patching as tlp

    from analyses.causal.attribution import _forward_backward, attribute, attribute_many
    from analyses.causal.patching import PatchingConfig, make_runner, patch

    config, hooks_config = PatchingConfig("z"), PatchingConfig("z", engine="hooks")
    mean_metric = lambda logits: pair.score(logits).mean()  # noqa: E731 - TL wants a scalar

    def tl_sweep():
        with torch.no_grad():
            _, cache = model.run_with_cache(pair.clean)
            return tlp.get_act_patch_attn_head_out_all_pos(model, pair.corrupted, cache,
                                                            mean_metric)

    runs = {"ours": lambda: patch(model, pair, config)}
    if hooks:
        runs["hooks"] = lambda: patch(model, pair, hooks_config)
    runs |= {"attr": lambda: attribute(model, pair, config), "tl": tl_sweep}
    if attr_all:
        configs = [PatchingConfig(c) for c in ALL_COMPONENTS]
        runner = make_runner(model, pair)
        runs["attr_all"] = lambda: attribute_many(model, pair, configs, qk_fix=True)
        runs["fwd_bwd"] = lambda: _forward_backward(runner, pair.corrupted, pair.score,
                                                    ["blocks.0.hook_resid_pre"])
    out = {key: fn() for key, fn in runs.items()}  # warm-up, and the results compared
    times = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):  # interleaved, so a slow spell of the machine hits all of them
        for key, fn in runs.items():
            times[key] = min(times[key], best_time(fn, 1 if key == "tl" or attr_all else 5))
    if attr_all:  # TL's sweep is one forward per head plus its clean run
        n_pass = model.cfg.n_layers * model.cfg.n_heads + 1
        flops_tl = n_pass * flops(lambda: model(pair.corrupted))
    else:
        flops_tl = flops(tl_sweep)
    peaks = {"ours": peak_mb(runs["ours"])}
    if attr_all:
        peaks |= {"attr_all": peak_mb(runs["attr_all"]),
                  "tl": peak_mb(lambda: model.run_with_cache(pair.clean))}
    return Bench(times, out, flops(runs["ours"]), flops_tl, peaks)


def chunk_peaks(model, pair, sizes) -> dict[str, tuple[float, float]]:
    """(peak MiB, wall s) of attribution of every head and sublayer (AtP* q/k), whole and
    chunked; the time is one run outside the profiler (after the profiled one)."""
    from analyses.causal.attribution import attribute_many
    from analyses.causal.patching import PatchingConfig

    configs = [PatchingConfig(c) for c in ALL_COMPONENTS]
    runs = {"unchunked": None} | {f"chunks of {s}": s for s in sizes if s < pair.batch}
    out = {}
    for key, size in runs.items():
        fn = lambda s=size: attribute_many(model, pair, configs, qk_fix=True,  # noqa: E731
                                           chunk_pairs=s)
        out[key] = (peak_mb(fn), best_time(fn, 1))
    return out


def main(argv=None) -> None:
    import logging
    import warnings

    from analyses.causal.attribution import correlation

    # Only raw metric values are compared here: the "normalised effects unreliable" warning
    # (random model) and TransformerLens' deprecation notice are noise in this output.
    for name in ("transformer_lens", "analyses.causal.patching", "analyses.causal.attribution"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.random:
        model, label = random_model(), "random (d_model 192)"
    else:
        from probes.models import load_model

        model, label = load_model(args.model, device="cpu").model, args.model
    big = args.model == "smollm2" and not args.random
    hooks = not big if args.hooks is None else args.hooks
    attr_all = big if args.attribution_all is None else args.attribution_all
    for n in (int(v) for v in str(args.n).split(",")):
        pair = random_pair(n) if args.random else task_pair(args.task, n, args.model)
        if args.chunks_only:
            print(f"\nmodel {label}; task {pair.task}; {pair.batch} pairs x {pair.n_pos} "
                  f"tokens; threads {args.threads}")
            print_chunks(model, pair, args.chunk_pairs)
            continue
        r = bench(model, pair, args.repeats, hooks, attr_all)
        t, out = r.times, r.out
        cfg = model.cfg
        print(f"\nmodel {label}: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model "
              f"{cfg.d_model}; task {pair.task}; {pair.batch} pairs x {pair.n_pos} tokens; "
              f"threads {args.threads}")
        print(f"batched exact sweep        {t['ours'] * 1e3:9.1f} ms   "
              f"(engine: {out['ours'].engine}; {r.flops_ours / t['ours'] / 1e9:.1f} GFLOP/s)")
        if "hooks" in t:
            print(f"  same, hook engine        {t['hooks'] * 1e3:9.1f} ms   "
                  f"({t['hooks'] / t['ours']:.1f}x slower)")
        print(f"transformer_lens.patching  {t['tl'] * 1e3:9.1f} ms   "
              f"({t['tl'] / t['ours']:.1f}x slower; {r.flops_tl / t['tl'] / 1e9:.1f} GFLOP/s)")
        print(f"attribution patching       {t['attr'] * 1e3:9.1f} ms   "
              f"(exact = {t['ours'] / t['attr']:.2f}x attribution)")
        print(f"FLOPs: ours {r.flops_ours / 1e6:.0f} M, TL {r.flops_tl / 1e6:.0f} M "
              f"(TL does {r.flops_tl / r.flops_ours:.2f}x the arithmetic)")
        print(f"max |ours - TL| = {(out['ours'].values - out['tl']).abs().max().item():.2e}; "
              f"corr(attribution, exact) = {correlation(out['ours'].table, out['attr'].table):.3f}")
        if "attr_all" in t:
            print(f"attribution, all heads/sublayers ({', '.join(ALL_COMPONENTS)}; AtP* q/k) "
                  f"{t['attr_all'] * 1e3:.1f} ms = {t['attr_all'] / t['fwd_bwd']:.2f}x one "
                  f"forward+backward ({t['fwd_bwd'] * 1e3:.1f} ms)")
        print("peak memory allocated by torch: "
              + ", ".join(f"{k} {v:.1f} MiB" for k, v in r.peaks.items())
              + (" (tl: one run_with_cache)" if "tl" in r.peaks else ""))
        print_chunks(model, pair, args.chunk_pairs)


def print_chunks(model, pair, chunk_pairs: str) -> None:
    """Print :func:`chunk_peaks` for the comma-separated sizes and ``pairs_per_chunk``'s."""
    from analyses.causal.attribution import pairs_per_chunk

    sizes = [int(v) for v in str(chunk_pairs).split(",")]
    print("peak memory (wall time) of attribution, all heads/sublayers, by chunk: "
          + ", ".join(f"{k} {mb:.1f} MiB ({s:.1f} s)"
                      for k, (mb, s) in chunk_peaks(model, pair, sizes).items())
          + f" (256 MB budget -> {pairs_per_chunk(model, pair.n_pos, 256.0)} pairs/chunk)")


if __name__ == "__main__":
    main()
