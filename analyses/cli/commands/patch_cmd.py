"""`attnlab patch` and `attnlab ablate`: causal interventions on a task, saved as a run.

    attnlab patch --model organism --task ioi --component z
    attnlab patch --model organism --task ioi --component resid_pre --per-position --method noising
    attnlab patch --model organism --task ioi --component z --method attribution
    attnlab patch --model organism --task ioi --component path --receivers logits
    attnlab patch --model minilm --component z \\
        --clean "The cat sat on the mat." --corrupted "The dog sat on the mat."
    attnlab ablate --model organism --task recall --heads 0.2,1.3 --method mean
    attnlab ablate --model organism --impairment --k 3
"""

from __future__ import annotations

COMPONENTS = ("z", "resid_pre", "resid_mid", "attn_out", "mlp_out", "q", "k", "v", "pattern",
              "path")
METHODS = ("denoising", "noising", "attribution", "attribution-noising")


def register(sub, common) -> None:
    p = sub.add_parser(
        "patch", parents=[common], help="activation / attribution / path patching sweep",
        description="Patch every component of one kind (clean <-> corrupted) and save the "
        "effects as a `patching` table in a new run. Metric: the task's logit difference "
        "(decoders) or the sentence-embedding cosine (encoders, --clean/--corrupted).",
    )
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi", help="data.tasks task (decoders)")
    p.add_argument("--component", default="z", choices=COMPONENTS,
                   help="z = each head's output; path = head->receiver path patching")
    p.add_argument("--per-position", action="store_true", help="also split by position")
    p.add_argument("--method", default="denoising", choices=METHODS,
                   help="attribution* also runs the exact sweep and reports the correlation")
    p.add_argument("--receivers", default="logits",
                   help="path patching receivers: 'logits' or heads 'L.H[qkv]', e.g. '3.1q,3.2'")
    p.add_argument("--layers", default=None, help="comma-separated layers (default all)")
    p.add_argument("--n", type=int, default=64, help="prompt pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean", action="append", help="encoder: a clean sentence (repeatable)")
    p.add_argument("--corrupted", action="append", help="encoder: its corrupted twin")
    p.add_argument("--top", type=int, default=10, help="rows to print")
    p.set_defaults(func=run)

    a = sub.add_parser(
        "ablate", parents=[common], help="ablate heads/sublayers; selective impairment",
        description="Zero/mean/resample-ablate heads and sublayers and report accuracy on "
        "every task, or (--impairment) ablate the top recall and reasoning heads found by "
        "patching next to random head sets of the same size.",
    )
    a.add_argument("--model", default="organism")
    a.add_argument("--task", default=None, help="only this task (default: every task)")
    a.add_argument("--heads", default="", help="heads 'L.H,L.H'")
    a.add_argument("--sublayers", default="", help="sublayers 'attn1,mlp2'")
    a.add_argument("--method", default="mean", choices=("zero", "mean", "resample"))
    a.add_argument("--impairment", action="store_true", help="selective-impairment experiment")
    a.add_argument("--k", type=int, default=3, help="impairment: heads per set")
    a.add_argument("--n-random", type=int, default=5, help="impairment: random sets")
    a.add_argument("--n", type=int, default=64)
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=run_ablate)


def parse_receivers(text: str):
    from analyses.causal.path_patching import Receiver

    if text.strip() == "logits":
        return ()
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        body = item.rstrip("qkv")
        inputs = tuple(item[len(body):]) or ("q", "k", "v")
        try:
            layer, head = (int(x) for x in body.split("."))
        except ValueError:
            raise ValueError(f"receiver {item!r}: write 'logits' or 'LAYER.HEAD[qkv]'") from None
        out.append(Receiver(layer, head, inputs))
    return tuple(out)


def _pair(args, loaded):
    from analyses.causal.encoder import sentence_pair
    from analyses.causal.patching import pair_from_task
    from data.tasks import load_task

    if loaded.kind == "encoder":
        if not args.clean or not args.corrupted:
            raise ValueError("encoders need --clean and --corrupted sentences (same token count)")
        return sentence_pair(loaded, args.clean, args.corrupted)
    return pair_from_task(load_task(args.task, n=args.n, seed=args.seed))


def _sweep(args, loaded, pair):
    """(table, note) for the requested sweep."""
    import pandas as pd

    from analyses.causal.attribution import attribute, correlation
    from analyses.causal.patching import PatchingConfig, patch
    from analyses.causal.path_patching import PathPatchingConfig, path_patch

    method = "noising" if args.method in ("noising", "attribution-noising") else "denoising"
    if args.component == "path":
        cfg = PathPatchingConfig(parse_receivers(args.receivers), method=method)
        return path_patch(loaded, pair, cfg, progress=True), ""
    layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else None
    cfg = PatchingConfig(args.component, args.per_position, method=method, layers=layers)
    exact = patch(loaded, pair, cfg, progress=True)
    if not args.method.startswith("attribution"):
        return exact.table, ""
    est = attribute(loaded, pair, cfg).table
    r = correlation(exact.table, est)
    return pd.concat([exact.table, est], ignore_index=True), f"corr(attribution, exact) = {r:.3f}"


def run(args) -> int:
    from data.store import RunStore
    from probes.models import load_model

    loaded = load_model(args.model, device=args.device)
    pair = _pair(args, loaded)
    store = RunStore(args.runs_dir)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "runs_dir", "device")}
    with store.start_run(command="patch", model=loaded.name, config=config) as run_:
        table, note = _sweep(args, loaded, pair)
        run_.write_table("patching", table)
        if note:
            run_.update_manifest(note=note)
    top = table.reindex(table.normalized_effect.abs().sort_values(ascending=False).index)
    cols = ["component", "layer", "head", "position", "method", "effect", "normalized_effect"]
    print(top[cols].head(args.top).round(4).to_string(index=False))
    if note:
        print(note)
    print(f"run {run_.run_id}: {len(table)} rows in table 'patching' ({run_.path})")
    return 0


def _components(args):
    from analyses.causal.ablation import Component

    comps = [Component("head", *(int(x) for x in h.split(".")))
             for h in filter(None, args.heads.split(","))]
    for s in filter(None, args.sublayers.split(",")):
        kind = s.rstrip("0123456789")
        comps.append(Component(kind, int(s[len(kind):])))
    if not comps:
        raise ValueError("nothing to ablate: give --heads L.H,... and/or --sublayers attn1,mlp2, "
                         "or --impairment")
    return comps


def _ablation_table(loaded, args):
    from analyses.causal.ablation import AblationConfig
    from analyses.causal.impairment import ImpairmentConfig, ablation_accuracy, selective_impairment
    from data.tasks import TASKS, load_task

    tasks = [args.task] if args.task else list(TASKS)
    if args.impairment:
        tasks = list(dict.fromkeys(tasks + ["recall", "reasoning"]))
    data = {t: load_task(t, n=args.n, seed=args.seed) for t in tasks}
    refs = {t: load_task(t, n=args.n, seed=args.seed + 1) for t in tasks}
    if args.impairment:
        cfg = ImpairmentConfig(k=args.k, n_random=args.n_random, ablation=args.method,
                               seed=args.seed)
        return selective_impairment(loaded, data, refs, cfg).table
    comps = _components(args)
    return ablation_accuracy(loaded, data, refs, comps, AblationConfig(args.method, args.seed),
                             name=f"{args.method}_ablation")


def run_ablate(args) -> int:
    from data.store import RunStore
    from probes.models import load_model

    loaded = load_model(args.model, device=args.device)
    if loaded.kind != "decoder":
        raise ValueError("ablate runs task accuracies: use a decoder model (e.g. organism)")
    store = RunStore(args.runs_dir)
    config = {k: v for k, v in vars(args).items() if k not in ("func", "runs_dir", "device")}
    with store.start_run(command="ablate", model=loaded.name, config=config) as run_:
        table = _ablation_table(loaded, args)
        run_.write_table("impairment", table)
    print(table.round(4).to_string(index=False))
    print(f"run {run_.run_id}: table 'impairment' ({run_.path})")
    return 0
