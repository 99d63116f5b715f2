"""`attnlab patch` and `attnlab ablate`: causal interventions on a task, saved as a run.

    attnlab patch --model organism --task ioi --component z
    attnlab patch --model organism --task ioi --component resid_pre --per-position --method noising
    attnlab patch --model organism --task ioi --component z --method attribution
    attnlab patch --model organism --task ioi --component path --receivers logits
    attnlab patch --model organism --task ioi --component path --receivers L2H0q,L2H1kv
    attnlab patch --model minilm --component z \\
        --clean "The cat sat on the mat." --corrupted "The dog sat on the mat."
    attnlab ablate --model organism --task recall --heads L0H2,L1H3 --method mean
    attnlab ablate --model organism --impairment --k 3

Heads are typed as ``L1H2`` or ``1.2`` (docs/GLOSSARY.md) and printed as ``L1H2``.
"""

from __future__ import annotations

import re

from analyses.cli.options import HEADS_HELP, add_command, add_model, add_sample, add_task

COMPONENTS = ("z", "resid_pre", "resid_mid", "attn_out", "mlp_out", "q", "k", "v", "pattern",
              "path")
METHODS = ("denoising", "noising", "attribution", "attribution-noising")
RECEIVERS_HELP = ("path patching receivers: 'logits', or comma-separated heads (L<layer>H<head> "
                  "or <layer>.<head>), each followed by the inputs that receive (q, k, v; "
                  "default all), e.g. 'L3H1q,L3H2' or '3.1q,3.2'")
PATCH_HELP = "activation / attribution / path patching sweep"
PATCH_DESCRIPTION = (
    "Patch every component of one kind (clean <-> corrupted) and save the effects as a "
    "`patching` table in a new run. Metric: the task's logit difference (decoders) or the "
    "sentence-embedding cosine (encoders, --clean/--corrupted).")
ABLATE_HELP = "ablate heads/sublayers; selective impairment"
ABLATE_DESCRIPTION = (
    "Zero/mean/resample-ablate heads and sublayers and report accuracy on every task, or "
    "(--impairment) ablate the top recall and reasoning heads found by patching next to random "
    "head sets of the same size.")
#: A receiver: a head, then optionally the inputs that receive, as ``q``/``kv`` or ``(kv)``.
_RECEIVER = re.compile(r"^(?P<head>.+?)(?:\((?P<paren>[qkv]+)\)|(?P<inputs>[qkv]*))$")


def register(sub, common) -> None:
    p = add_command(sub, common, "patch", run, PATCH_HELP, PATCH_DESCRIPTION)
    add_model(p)
    add_task(p)
    p.add_argument("--component", default="z", choices=COMPONENTS,
                   help="z = each head's output; path = head->receiver path patching")
    p.add_argument("--per-position", action="store_true", help="also split by position")
    p.add_argument("--method", default="denoising", choices=METHODS,
                   help="attribution* also runs the exact sweep and reports the correlation")
    p.add_argument("--receivers", default="logits", help=RECEIVERS_HELP)
    p.add_argument("--layers", default=None, help="comma-separated layers (default all)")
    add_sample(p, "prompt pairs")
    p.add_argument("--clean", action="append", help="encoder: a clean sentence (repeatable)")
    p.add_argument("--corrupted", action="append", help="encoder: its corrupted twin")
    p.add_argument("--top", type=int, default=10, help="rows to print")

    a = add_command(sub, common, "ablate", run_ablate, ABLATE_HELP, ABLATE_DESCRIPTION)
    add_model(a)
    add_task(a, None, "only this task (default: every task)")
    a.add_argument("--heads", default="", help=HEADS_HELP)
    a.add_argument("--sublayers", default="", help="comma-separated sublayers, e.g. attn1,mlp2")
    a.add_argument("--method", default="mean", choices=("zero", "mean", "resample"))
    a.add_argument("--impairment", action="store_true", help="selective-impairment experiment")
    a.add_argument("--k", type=int, default=3, help="impairment: heads per set")
    a.add_argument("--n-random", type=int, default=5, help="impairment: random sets")
    add_sample(a, "task items per task")


def parse_receivers(text: str):
    """Receivers of ``--receivers``: () for 'logits', else one Receiver per head.

    A head is ``L3H1`` or ``3.1``; the inputs that receive follow it (``L3H1q``, ``3.1kv``,
    ``L3H1(q)`` as the receivers are printed), all of q, k, v when none is given.
    """
    from analyses.causal.path_patching import Receiver
    from data.notation import parse_head

    if text.strip() == "logits":
        return ()
    out, seen = [], set()
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = _RECEIVER.match(item)
        try:
            head = parse_head(m["head"])
        except ValueError:
            raise ValueError(f"receiver {item!r}: write 'logits' or heads as LAYER.HEAD[qkv] "
                             "or L<layer>H<head>[qkv], e.g. '3.1q,3.2' or 'L3H1q,L3H2'") from None
        if head in seen:
            raise ValueError(f"receiver {head.label} is listed twice in {text!r}")
        seen.add(head)
        inputs = tuple(dict.fromkeys(m["paren"] or m["inputs"] or "qkv"))
        out.append(Receiver(head.layer, head.head, inputs))
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
    from analyses.figures.labels import with_head_column

    top = table.reindex(table.normalized_effect.abs().sort_values(ascending=False).index)
    cols = ["component", "layer", "head", "position", "method", "effect", "normalized_effect"]
    print(with_head_column(top[cols].head(args.top).round(4)).to_string(index=False))
    if note:
        print(note)
    print(f"run {run_.run_id}: {len(table)} rows in table 'patching' ({run_.path})")
    return 0


def _components(args):
    """The heads (L1H2 or 1.2) and sublayers (attn1, mlp2) to ablate; a repeat is an error."""
    from analyses.causal.ablation import Component
    from data.notation import SUBLAYERS, parse_heads

    comps = [Component("head", h.layer, h.head) for h in parse_heads(args.heads)]
    for s in filter(None, (x.strip() for x in args.sublayers.split(","))):
        kind = s.rstrip("0123456789")
        if kind not in SUBLAYERS or kind == s:
            raise ValueError(f"sublayer {s!r}: write attn<layer> or mlp<layer>, e.g. attn1,mlp2")
        comp = Component(kind, int(s[len(kind):]))
        if comp in comps:
            raise ValueError(f"sublayer {comp.label()} is listed twice in {args.sublayers!r}")
        comps.append(comp)
    if not comps:
        raise ValueError("nothing to ablate: give --heads L0H1,... and/or --sublayers "
                         "attn1,mlp2, or --impairment")
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
