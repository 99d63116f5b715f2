"""Benchmark: batched exact head sweep vs transformer_lens.patching vs attribution patching.

One run, same prompts, same metric (the task's logit difference): the per-head output (z,
all positions) sweep by

1. ``analyses.patching.patch`` (the fast engine where it applies; also timed with the hook
   engine),
2. ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos`` (one forward per head;
   its clean ``run_with_cache`` is included, as our two baseline runs are),
3. ``analyses.attribution.attribute`` (one forward + backward, one forward).

Prints wall times, ratios, the max |ours - TL| and the attribution-vs-exact correlation.
Goal (issue 8): ours >= 20x faster than TL on CPU, <= 2x attribution.

    python benchmarks/patching.py --model organism --task ioi --n 32
    python benchmarks/patching.py --random   # organism-sized random model, random prompts
"""

from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as ``python benchmarks/X.py``, Python puts benchmarks/ first on sys.path, where this
# folder's probes.py would shadow the ``probes`` package: put the repository root there.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi")
    p.add_argument("--n", type=int, default=32, help="prompt pairs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--random", action="store_true",
                   help="an organism-sized random model and random prompts (no checkpoint)")
    return p.parse_args(argv)


def random_setup(n: int):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from analyses.patching import PatchPair

    cfg = HookedTransformerConfig(n_layers=4, d_model=192, n_heads=6, d_head=32, d_mlp=768,
                                  n_ctx=64, d_vocab=428, act_fn="gelu", normalization_type="LN",
                                  seed=0, device="cpu")
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(1, 428, (n, 16), generator=g)
    corrupted = clean.clone()
    corrupted[:, 5] = torch.randint(1, 428, (n,), generator=g)
    ans = torch.randint(1, 428, (n, 2), generator=g)

    def metric(logits):
        last = logits[:, -1]
        return (last.gather(1, ans[:, :1]) - last.gather(1, ans[:, 1:]))[:, 0]

    return model, PatchPair(clean, corrupted, metric, task="random")


def task_setup(model_name: str, task: str, n: int):
    from analyses.patching import pair_from_task
    from data.tasks import load_task
    from probes.models import load_model

    model = load_model(model_name, device="cpu").model
    return model, pair_from_task(load_task(task, n=n, seed=0))


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> None:
    import transformer_lens.patching as tlp

    from analyses.attribution import attribute, correlation
    from analyses.patching import PatchingConfig, patch

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, pair = random_setup(args.n) if args.random else task_setup(args.model, args.task,
                                                                      args.n)
    config = PatchingConfig("z")
    mean_metric = lambda logits: pair.metric(logits).mean()  # noqa: E731 - TL wants a scalar

    def tl_sweep():
        with torch.no_grad():
            _, cache = model.run_with_cache(pair.clean)
            return tlp.get_act_patch_attn_head_out_all_pos(model, pair.corrupted, cache,
                                                            mean_metric)

    patch(model, pair, config)  # warm-up
    t_ours, ours = best_time(lambda: patch(model, pair, config), args.repeats)
    hooks_config = PatchingConfig("z", engine="hooks")
    t_hooks, _ = best_time(lambda: patch(model, pair, hooks_config), args.repeats)
    t_attr, attr = best_time(lambda: attribute(model, pair, config), args.repeats)
    t_tl, ref = best_time(tl_sweep, max(1, args.repeats - 2))
    cfg = model.cfg
    print(f"model {'random-organism-size' if args.random else args.model}: {cfg.n_layers} "
          f"layers x {cfg.n_heads} heads, d_model {cfg.d_model}; task {pair.task}; "
          f"{pair.batch} pairs x {pair.n_pos} tokens; threads {args.threads}")
    print(f"batched exact sweep        {t_ours * 1e3:9.1f} ms   (engine: {ours.engine})")
    print(f"  same, hook engine        {t_hooks * 1e3:9.1f} ms   ({t_hooks / t_ours:.1f}x slower)")
    print(f"transformer_lens.patching  {t_tl * 1e3:9.1f} ms   ({t_tl / t_ours:.1f}x slower)")
    print(f"attribution patching       {t_attr * 1e3:9.1f} ms   (exact = {t_ours / t_attr:.2f}x "
          "attribution)")
    print(f"max |ours - TL| = {(ours.values - ref).abs().max().item():.2e}; "
          f"corr(attribution, exact) = {correlation(ours.table, attr.table):.3f}")


if __name__ == "__main__":
    main()
