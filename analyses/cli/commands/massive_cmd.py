"""`attnlab massive ablate | sinks`: causal tests of massive activations and attention sinks.

ablate: find the massive activations (the probe's thresholds) on the model's reference text,
then re-run held-out text and the default tasks with them set to zero, to their reference mean,
and (control) as many random non-massive entries set to zero (--draws draws). Tables
massive_ablation and massive_sites.

sinks: per head, the attention to position 0 split into |q| |k0| cos(theta) against the other
keys, the sink's value contribution |v0 W_O|, and the held-out loss change when the attention to
position 0 is removed (rest renormalised) per layer and per chosen head. Tables
sink_decomposition and sink_removal. An encoder (minilm) has no next-token loss: its metric is
the cosine of each held-out sentence's embedding to the unpatched model's.

    attnlab massive ablate --model smollm2
    attnlab massive ablate --model organism --massive-abs 20 --massive-ratio 20
    attnlab massive ablate --model minilm --massive-ratio 100
    attnlab massive sinks --model smollm2 --top-heads 5
    attnlab massive sinks --model organism --heads L3H0,L3H2
"""

from __future__ import annotations

import argparse

from analyses.cli.options import add_model, add_sample

#: the probe's thresholds, as ``attnlab probe`` spells them (defaults: Sun et al. 2024)
THRESHOLDS = (("--massive-abs", 100.0, "a massive activation has |value| above this"),
              ("--massive-ratio", 1000.0, "and above this many times its sequence's median |h|"))


def _common(p) -> None:
    add_model(p, default="organism", help="organism | smollm2 | minilm | a TransformerLens "
              "decoder with a default corpus")
    add_sample(p, "items per default task (decoders)", n=32)
    p.add_argument("--heldout-tokens", type=int, default=2000,
                   help="tokens of held-out text (the model's corpus 'heldout' split)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--sink-epsilon", type=float, default=0.3,
                   help="sink rate: share of heads attending > this to position 0 (Gu et al.)")


def register(sub, common) -> None:
    p = sub.add_parser("massive", help="massive activations and sinks: causal tests",
                       description=__doc__.split("\n\n")[0])
    msub = p.add_subparsers(dest="massive_command", metavar="ACTION")
    msub.required = True
    a = msub.add_parser("ablate", parents=[common], help="zero / mean / random-control ablation "
                        "of the massive activations", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(a)
    a.add_argument("--reference-tokens", type=int, default=4000,
                   help="tokens of reference text (corpus 'train' split): sites and means")
    a.add_argument("--draws", type=int, default=3, help="random-control draws")
    a.add_argument("--layer", type=int, default=None,
                   help="patch at this layer's hook_resid_post (default: the emergence layer, "
                   "the first with a massive activation)")
    for flag, default, what in THRESHOLDS:
        a.add_argument(flag, type=float, default=default, help=f"{what} (Sun et al.: {default:g})")
    a.set_defaults(func=run_ablate, writes_runs=True)
    s = msub.add_parser("sinks", parents=[common], help="q/k/cos decomposition of the attention "
                        "to position 0 and its removal", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(s)
    s.add_argument("--heads", default=None,
                   help="also remove the sink of each of these heads alone (L1H2,1.3)")
    s.add_argument("--top-heads", type=int, default=0,
                   help="also remove it for each of the k heads with the highest sink score")
    s.add_argument("--no-layers", action="store_true",
                   help="skip the per-layer removal (all heads of a layer at once)")
    s.set_defaults(func=run_sinks, writes_runs=True)


def _config(args, **extra):
    from analyses.cli.checks import check_float, check_int
    from analyses.interventions.study import InterventionConfig
    from probes.sinks import SinkConfig

    check_int("--n", args.n, 1, 10_000)
    check_int("--seed", args.seed, 0)
    check_int("--heldout-tokens", args.heldout_tokens, 2, 10_000_000)
    check_int("--batch-size", args.batch_size, 1)
    check_float("--sink-epsilon", args.sink_epsilon, 0.0, 0.999)
    return InterventionConfig(heldout_tokens=args.heldout_tokens, n_items=args.n,
                              batch_size=args.batch_size, seed=args.seed,
                              sinks=SinkConfig(args.sink_epsilon), **extra)


def _load(args):
    from probes.models import load_model

    return load_model(args.model, device=args.device)


def run_ablate(args) -> int:
    import dataclasses
    import time

    from analyses.cli.checks import check_float, check_int, check_layers
    from analyses.cli.launch import start_run  # --nproc: rank 0 owns the run
    from analyses.interventions.study import massive_ablation
    from data.store import RunStore
    from probes.massive import MassiveConfig

    check_int("--reference-tokens", args.reference_tokens, 2, 10_000_000)
    check_int("--draws", args.draws, 1, 100)
    check_float("--massive-abs", args.massive_abs, 0.0)
    check_float("--massive-ratio", args.massive_ratio, 0.0)
    check_int("--layer", args.layer, 0)
    config = _config(args, reference_tokens=args.reference_tokens, draws=args.draws,
                     layer=args.layer,
                     massive=MassiveConfig(args.massive_abs, args.massive_ratio))
    t0 = time.perf_counter()
    loaded = _load(args)
    if args.layer is not None:
        check_layers("--layer", [args.layer], loaded.cfg.n_layers)
    store = RunStore(args.runs_dir)
    with start_run(store, command="massive ablate", model=args.model,
                         config=dataclasses.asdict(config)) as run_:
        res = massive_ablation(loaded, config)
        run_.write_table("massive_ablation", res.table.assign(model=loaded.name))
        run_.write_table("massive_sites", res.sites.table().assign(model=loaded.name))
        run_.update_manifest(massive_layer=res.sites.layer, massive_dims=list(res.sites.dims))
    print(f"run {run_.run_id}: massive ablation of {args.model} in "
          f"{time.perf_counter() - t0:.1f} s -> {store.root / run_.run_id}")
    s = res.sites
    print(f"  patched at layer {s.layer} (hook_resid_post): "
          + ", ".join(f"dim {d} on {t!r} (mean {m:.1f})"
                      for d, t, m in zip(s.dims, s.tokens, s.means)))
    _print_conditions(res.table)
    return 0


def _print_conditions(table) -> None:
    rows = table[table["layer"] == -1]
    g = rows.groupby(["condition", "metric"])["value"]
    mean, std = g.mean().unstack(), g.std().unstack()
    for cond in ("none", "zero", "mean", "random"):
        if cond not in mean.index:
            continue
        items = [f"{m} {mean.at[cond, m]:.4g}" + (f" ± {std.at[cond, m]:.2g}"
                                                   if cond == "random" else "")
                 for m in mean.columns if m != "sink_rate"]
        print(f"  {cond:>6}: " + ", ".join(items))


def run_sinks(args) -> int:
    import dataclasses
    import time

    from analyses.cli.checks import check_heads, check_int
    from analyses.cli.launch import start_run  # --nproc: rank 0 owns the run
    from analyses.interventions.study import sink_study
    from data.notation import head_label, parse_heads
    from data.store import RunStore

    check_int("--top-heads", args.top_heads, 0, 10_000)
    heads = tuple((h.layer, h.head) for h in parse_heads(args.heads)) if args.heads else ()
    if args.no_layers and not heads and not args.top_heads:
        from analyses.cli.checks import conflict

        raise conflict("--no-layers", "no --heads/--top-heads",
                       "nothing would be removed; give --heads or --top-heads")
    config = _config(args, per_layer=not args.no_layers, heads=heads, top_heads=args.top_heads)
    t0 = time.perf_counter()
    loaded = _load(args)
    check_heads("--heads", heads, loaded.cfg)
    store = RunStore(args.runs_dir)
    with start_run(store, command="massive sinks", model=args.model,
                         config=dataclasses.asdict(config)) as run_:
        res = sink_study(loaded, config)
        run_.write_table("sink_decomposition", res.decomposition.assign(model=loaded.name))
        run_.write_table("sink_removal", res.removal.assign(model=loaded.name))
    print(f"run {run_.run_id}: sink study of {args.model} in {time.perf_counter() - t0:.1f} s "
          f"-> {store.root / run_.run_id}")
    rem = res.removal
    if not rem.empty:
        print(f"  {rem['metric'].iloc[0]} unpatched {rem['baseline'].iloc[0]:.4f}; without the "
              "attention to position 0:")
        for r in rem.itertuples():
            what = f"layer {r.layer}" if r.head < 0 else head_label(r.layer, r.head)
            print(f"    {what:>9}: {r.value:.4f} ({r.delta:+.4f})")
    return 0
