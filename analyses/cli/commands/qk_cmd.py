"""`attnlab qk`: the exact QK decomposition of one head's attention scores on a task, as a run.

With each position's normalisation scale frozen, the head's pre-softmax score s(i, j) splits
exactly into query-component x key-component terms (embeddings, every upstream head, MLP and
bias; docs/METHODS.md §8), averaged over the task's (query, key) pairs:
  induction: queries whose token occurred before, key = the token after that occurrence;
  previous:  every query, key = the previous token;
  argmax:    the last query, key = where the head attends most.
--sae-layers splits those upstream layers' heads into their attention-SAE features
(shipped SAEs; 'all' = every upstream layer that has one). Tables: qk_terms, qk_summary.

    attnlab qk --model organism --layer 1 --head 2 --task induction
    attnlab qk --model organism --layer 1 --head 2 --task induction --sae-layers 0
    attnlab qk --model smollm2 --layer 20 --head 6 --task ioi --pairs argmax --n 16
"""

from __future__ import annotations

from analyses.cli.checks import UsageError, check_int, check_task_sample, parse_ints
from analyses.cli.options import add_command, add_model, add_sample, add_task

RULES = ("induction", "previous", "argmax")


def register(sub, common) -> None:
    p = add_command(sub, common, "qk", run, "exact QK decomposition of one head's scores",
                    __doc__)
    add_model(p, default="organism")
    p.add_argument("--layer", type=int, required=True, help="the head's layer")
    p.add_argument("--head", type=int, required=True, help="the head's index in its layer")
    add_task(p, default="induction")
    add_sample(p, "task prompts", n=64)
    p.add_argument("--pairs", choices=RULES, default=None,
                   help="which (query, key) pairs to average over (default: induction for the "
                        "induction task, else argmax)")
    p.add_argument("--sae-layers", default="",
                   help="upstream layers whose heads are split into shipped SAE features: "
                        "comma-separated, or 'all'")
    p.add_argument("--top", type=int, default=10, help="terms to print (default 10)")


def resolve_sae_layers(text: str, model: str, layer: int) -> list[int]:
    """Parse --sae-layers against the shipped SAEs (before any model loads)."""
    from saes.io import list_shipped

    have = sorted(la for m, la, _ in list_shipped() if m == model)
    if text.strip() == "all":
        return [la for la in have if la < layer]
    wanted = list(parse_ints("--sae-layers", text, 0)) if text.strip() else []
    bad = [la for la in wanted if la >= layer]
    if bad:
        raise UsageError(f"--sae-layers {bad}: only layers below --layer {layer} feed its scores")
    missing = [la for la in wanted if la not in have]
    if missing:
        raise UsageError(f"--sae-layers {missing}: no shipped SAE for {model} there (shipped: "
                         f"{have or 'none'}); train one with `attnlab sae train`")
    return wanted


def run(args) -> int:
    import time

    from analyses.qk import QKConfig, decompose_qk, qk_summary, qk_table, top_terms
    from analyses.qk.table import side_totals
    from data.notation import head_label
    from data.store import RunStore
    from data.tasks import load_task
    from probes.models import load_model
    from saes.io import load_shipped

    check_task_sample(args, "the QK decomposition needs a causal decoder")
    check_int("--layer", args.layer, 0)
    check_int("--head", args.head, 0)
    check_int("--top", args.top, 1)
    rule = args.pairs or ("induction" if args.task == "induction" else "argmax")
    sae_layers = resolve_sae_layers(args.sae_layers, args.model, args.layer)
    t0 = time.perf_counter()
    loaded = load_model(args.model, device=args.device)
    cfg = loaded.model.cfg
    if args.layer >= cfg.n_layers or args.head >= cfg.n_heads:
        raise UsageError(f"--layer/--head: {head_label(args.layer, args.head)} is not in this "
                         f"model ({cfg.n_layers} layers x {cfg.n_heads} heads)")
    ds = load_task(args.task, args.n, args.seed, model=args.model)
    saes = {la: load_shipped(args.model, la, cfg.device) for la in sae_layers}
    config = QKConfig(layer=args.layer, head=args.head, pairs=rule)
    res = decompose_qk(loaded, ds.clean_tokens, config, saes)
    meta = {"model": args.model, "task": args.task}
    terms, summary = qk_table(res, **meta), qk_summary(res, **meta)
    store = RunStore(args.runs_dir)
    manifest = {"layer": args.layer, "head": args.head, "task": args.task, "n": args.n,
                "seed": args.seed, "pairs": rule, "sae_layers": sae_layers,
                "n_pairs": len(res.score), "max_abs_error": res.max_error}
    with store.start_run(command="qk", model=args.model, config=manifest) as run_:
        run_.write_table("qk_terms", terms)
        run_.write_table("qk_summary", summary)
    head = head_label(args.layer, args.head)
    print(f"run {run_.run_id}: {head} on {args.task} ({len(res.score)} '{rule}' pairs of "
          f"{args.n} prompts) in {time.perf_counter() - t0:.1f} s -> {store.root / run_.run_id}")
    print(f"  mean score {float(res.score.mean()):.3f}; sum of terms matches it to "
          f"{res.max_error:.1e} (largest error over pairs)")
    print(f"  top {args.top} terms (query-side x key-side: mean over pairs):")
    for r in top_terms(terms, args.top).itertuples():
        print(f"    {r.q_component:>14} x {r.k_component:<14} {r.mean:+.3f} (std {r.std:.3f})")
    keys = side_totals(terms, "k").head(5)
    print("  key side, summed over query components: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in keys.items()))
    return 0
