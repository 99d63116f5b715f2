"""`attnlab sae ...`: train, evaluate and describe attention-output SAEs (hook_z).

    attnlab sae train --model organism --layer 1 --arch topk --d-sae 2048 --k 32
    attnlab sae eval --model organism --layer 1 --sae shipped
    attnlab sae features --model minilm --layer 3 --sae shipped
    attnlab sae list
    attnlab sae export --model organism --layer 1 --sae shipped --out np/organism-l1
    attnlab sae ship --model organism           # retrain the shipped SAEs from the recipe

Every command writes a run: `sae train` saves the SAE (SAE-Lens format) under
`<run>/sae` (or --out) and evaluates it on held-out tokens (table `sae_eval`); `sae features`
writes the feature tables (`sae_feature_examples`, `sae_feature_hist`, `sae_feature_heads`,
`sae_logit_effects`, `sae_head_summary`, `sae_head_features`).
"""

from __future__ import annotations

from analyses.cli.checks import (
    MAX_D_SAE,
    MAX_TOKENS,
    UsageError,
    check_float,
    check_folder,
    check_int,
    check_layers,
    conflict,
    given,
    parse_ints,
)
from analyses.cli.options import add_command, add_model

SAE_HELP = "'shipped', a path to an SAE folder, or sae_lens:<release>/<sae_id>"
#: Options of one architecture only (argparse dest -> architecture); their defaults are the
#: SAETrainConfig's, so a typed one for another architecture is an error, not ignored.
ARCH_OPTIONS = {"k": "topk", "l1": "standard", "l0": "jumprelu", "threshold": "jumprelu"}


def _sae_command(sp, common, name: str, func, help: str, description: str, sae: bool = True):
    """A subcommand on one model layer's hook_z: --model, --layer and (``sae``) --sae."""
    p = add_command(sp, common, name, func, help, description)
    add_model(p, default="minilm")
    p.add_argument("--layer", type=int, required=True, help="attention layer (hook_z)")
    if sae:
        p.add_argument("--sae", default="shipped", help=SAE_HELP)
    return p


def _add_train(sp, common) -> None:
    p = _sae_command(sp, common, "train", run_train, "train an SAE on one layer's hook_z",
                     "Train a TopK / JumpReLU / standard (ReLU+L1) SAE with SAE-Lens on "
                     "blocks.L.attn.hook_z; resumes from --out if interrupted.", sae=False)
    p.add_argument("--arch", default="topk", choices=["topk", "jumprelu", "standard"])
    p.add_argument("--d-sae", type=int, default=2048, help="dictionary size")
    p.add_argument("--k", type=int, default=None,
                   help="topk: active features per token (default 32)")
    p.add_argument("--l1", type=float, default=None, help="standard: L1 coefficient (default 1)")
    p.add_argument("--l0", type=float, default=None, help="jumprelu: L0 coefficient (default 1)")
    p.add_argument("--threshold", type=float, default=None,
                   help="jumprelu: initial threshold (default 0.01; Adam moves it by about lr "
                   "per step)")
    p.add_argument("--lr", type=float, default=1.2e-3)
    p.add_argument("--batch-tokens", type=int, default=1024, help="tokens per step")
    p.add_argument("--tokens", type=int, default=1_000_000, help="training tokens in total")
    p.add_argument("--buffer-tokens", type=int, default=200_000,
                   help="distinct activations collected (training cycles over them)")
    p.add_argument("--from-shards", default=None,
                   help="read hook_z from activation shards in this folder instead of the model")
    p.add_argument("--out", default=None, help="SAE folder (default: <run>/sae)")
    p.add_argument("--no-resume", action="store_true",
                   help="start afresh, deleting the checkpoints in --out (by default training "
                   "resumes from them if they were made with the same settings, and refuses "
                   "otherwise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-tokens", type=int, default=20_000)


def _add_eval(sp, common) -> None:
    p = _sae_command(sp, common, "eval", run_eval, "evaluate an SAE (L0, EV, CE recovered)",
                     "L0, explained variance, dead/dense features, and CE loss recovered "
                     "(decoders) or embedding cosine (MiniLM) on held-out tokens.")
    p.add_argument("--eval-tokens", type=int, default=20_000)


def _add_features(sp, common) -> None:
    p = _sae_command(sp, common, "features", run_features,
                     "feature tables (examples, DFA, logits)",
                     "Top examples, activation histograms, DFA by head, logit effects, and the "
                     "per-head polysemanticity summary (heads printed as L1H2), as run tables.")
    p.add_argument("--tokens", type=int, default=20_000, help="tokens to scan")
    p.add_argument("--top", type=int, default=10, help="examples / logit tokens per feature")
    p.add_argument("--bins", type=int, default=20, help="histogram bins")
    p.add_argument("--features", default=None, help="comma-separated indices (default: all)")


def _add_export(sp, common) -> None:
    p = _sae_command(sp, common, "export", run_export,
                     "export feature data as SAEDashboard/Neuronpedia JSON",
                     "Write the SAE's feature data (top examples with per-token activations, "
                     "activation histogram and density, logit effects, decoder weight by head) "
                     "as the batch-<i>.json and skipped_indexes.json files that SAEDashboard's "
                     "Neuronpedia runner writes and Neuronpedia imports (saes/export.py says "
                     "which fields are filled).")
    p.add_argument("--out", required=True, help="folder for the JSON files")
    p.add_argument("--tokens", type=int, default=20_000, help="held-out tokens to scan")
    p.add_argument("--top", type=int, default=10, help="examples / logit tokens per feature")
    p.add_argument("--bins", type=int, default=20, help="histogram bins")
    p.add_argument("--features", default=None,
                   help="comma-separated indices (default: every feature active on the tokens)")
    p.add_argument("--sae-set", default="attnlab-att",
                   help="Neuronpedia SAE set name written into the files")
    p.add_argument("--per-file", type=int, default=128, help="features per batch-<i>.json")
    p.set_defaults(writes_runs=False)


def register(sub, common) -> None:
    p = sub.add_parser("sae", help="attention-output SAEs: train, eval, features, export, list, "
                       "ship",
                       description=__doc__.split("\n\n")[0])
    sp = p.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")
    sp.required = True
    _add_train(sp, common)
    _add_eval(sp, common)
    _add_features(sp, common)
    _add_export(sp, common)
    add_command(sp, common, "list", run_list, "list the shipped SAEs", writes_runs=False)
    s = add_command(sp, common, "ship", run_ship, "retrain the shipped SAEs (data/saes)",
                    "Retrain the SAEs of data/saes/recipe.json and overwrite them.",
                    writes_runs=False)
    s.add_argument("--model", default=None, help="only this model (default: all in the recipe)")
    s.add_argument("--layers", default=None, help="comma-separated layers (default: recipe)")


def _load(args):
    """The model, then the arguments that need its sizes (``--layer``)."""
    from data.progress import phase
    from probes.models import load_model

    with phase(f"loading {args.model}"):
        loaded = load_model(args.model, device=args.device)
    check_layers("--layer", [args.layer], loaded.cfg.n_layers)
    return loaded


def _model_and_sae(args, tokens_flag: str, tokens: int):
    """``sae eval`` / ``sae features``: check --layer, --sae and the token count, load the
    model, then the SAE, checked to fit the layer's hook_z before any work."""
    from saes.activations import check_sae_fits
    from saes.io import check_sae_spec, resolve_sae

    check_int("--layer", args.layer, 0)
    check_int(tokens_flag, tokens, 1, MAX_TOKENS)
    check_sae_spec(args.sae, args.model, args.layer)
    loaded = _load(args)
    sae = resolve_sae(args.sae, loaded.name, args.layer, loaded.cfg.device)
    check_sae_fits(sae, loaded.model, args.layer)
    return loaded, sae


def check_train(args):
    """Every ``sae train`` argument, before the model loads: (SAETrainConfig, ActivationConfig).
    """
    from saes.config import ActivationConfig, SAETrainConfig

    check_int("--layer", args.layer, 0)
    for name, arch in ARCH_OPTIONS.items():
        for flag in given(args, name):
            if args.arch != arch:
                raise conflict(flag, f"--arch {args.arch}", f"it sets --arch {arch} SAEs only")
    check_int("--d-sae", args.d_sae, 1, MAX_D_SAE)
    check_int("--k", args.k, 1)
    if args.k is not None and args.k > args.d_sae:
        raise UsageError(f"--k {args.k} is more than --d-sae {args.d_sae}: a TopK SAE keeps k "
                         "of its d_sae features per token")
    check_float("--lr", args.lr, 0.0, open_lo=True)
    check_float("--l1", args.l1, 0.0)
    check_float("--l0", args.l0, 0.0)
    check_float("--threshold", args.threshold, 0.0, open_lo=True)
    check_int("--batch-tokens", args.batch_tokens, 1)
    if args.tokens < args.batch_tokens:
        raise UsageError(f"--tokens {args.tokens} is less than --batch-tokens "
                         f"{args.batch_tokens}: train for at least one batch")
    check_int("--buffer-tokens", args.buffer_tokens, 1, MAX_TOKENS)
    check_int("--eval-tokens", args.eval_tokens, 1, MAX_TOKENS)
    check_int("--seed", args.seed, 0)
    check_folder("--from-shards", args.from_shards, must_exist=True)
    check_folder("--out", args.out)
    typed = {"k": args.k, "l1_coefficient": args.l1, "l0_coefficient": args.l0,
             "jumprelu_init_threshold": args.threshold}
    cfg = SAETrainConfig(
        arch=args.arch, d_sae=args.d_sae, lr=args.lr, batch_tokens=args.batch_tokens,
        total_tokens=args.tokens, seed=args.seed,
        **{k: v for k, v in typed.items() if v is not None})
    return cfg, ActivationConfig(n_tokens=args.buffer_tokens, seed=args.seed)


def _eval_table(loaded, sae, layer, n_tokens, label):
    from data.progress import phase
    from saes.corpus import corpus_tokens
    from saes.evaluate import evaluate_sae

    tokens = corpus_tokens(loaded, n_tokens, seed=0, split="heldout")
    with phase(f"evaluating the SAE on {n_tokens} held-out tokens (L0, EV, loss with the SAE "
               "spliced in)"):
        ev = evaluate_sae(loaded, sae, layer, tokens)
    return ev, ev.to_frame(model=loaded.name, layer=layer, sae=label)


def _print_eval(ev) -> None:
    print(f"L0 {ev.l0:.1f}  explained variance {ev.explained_variance:.3f}  "
          f"dead {ev.dead_frac:.1%}  dense {ev.dense_frac:.1%}  ({int(ev.n_tokens)} tokens)")
    if ev.ce_recovered == ev.ce_recovered:  # not NaN: a decoder
        print(f"CE clean {ev.ce_clean:.4f}  with SAE {ev.ce_sae:.4f}  zero-ablated "
              f"{ev.ce_zero_abl:.4f}  -> {ev.ce_recovered:.1%} recovered")
    else:
        print(f"embedding cosine with SAE {ev.cos_sae:.4f} (zero-ablated {ev.cos_zero_abl:.4f})")


def run_train(args) -> int:
    from pathlib import Path

    from data.store import RunStore
    from saes.activations import z_shape
    from saes.train import corpus_source, resumable_checkpoint, train_attention_sae, train_signature

    cfg, acfg = check_train(args)
    loaded = _load(args)
    data = ({"source": "shards", "path": str(Path(args.from_shards).resolve()),
             "n_tokens": args.buffer_tokens} if args.from_shards else corpus_source(acfg))
    if args.out and not args.no_resume:  # a checkpoint of other settings: refused right here
        d_in = z_shape(loaded.model, args.layer).d_in
        resumable_checkpoint(args.out, train_signature(cfg, args.layer, loaded.name, d_in, data))
    acts = None
    if args.from_shards:
        from saes.shards import read_hook_z

        acts = read_hook_z(args.from_shards, args.layer, args.buffer_tokens, model=loaded.name)
    store = RunStore(args.runs_dir)
    config = {"train": cfg.to_dict(), "activations": acfg.to_dict(), "layer": args.layer,
              "from_shards": args.from_shards}
    from analyses.cli.launch import start_run  # rank 0 owns the run under --nproc

    with start_run(store, command="sae train", model=loaded.name, config=config) as run:
        out = Path(args.out) if args.out else run.path / "sae"
        res = train_attention_sae(loaded, args.layer, cfg, activations=acts,
                                  activation_cfg=acfg, out_dir=out, resume=not args.no_resume,
                                  data=data)
        ev, frame = _eval_table(loaded, res.sae, args.layer, args.eval_tokens, str(out))
        run.write_table("sae_eval", frame)
        run.update_manifest(sae_path=str(out), n_steps=res.n_steps,
                            resumed_from=res.resumed_from)
    print(f"SAE saved to {out} ({res.n_steps} steps, {res.n_tokens} tokens"
          + (f", resumed at {res.resumed_from}" if res.resumed_from else "") + ")")
    _print_eval(ev)
    print(f"run {run.run_id}")
    return 0


def run_eval(args) -> int:
    from data.store import RunStore

    loaded, sae = _model_and_sae(args, "--eval-tokens", args.eval_tokens)
    store = RunStore(args.runs_dir)
    config = {"sae": str(args.sae), "layer": args.layer, "eval_tokens": args.eval_tokens}
    from analyses.cli.launch import start_run  # --nproc: rank 0 owns the run

    with start_run(store, command="sae eval", model=loaded.name, config=config) as run:
        ev, frame = _eval_table(loaded, sae, args.layer, args.eval_tokens, str(args.sae))
        run.write_table("sae_eval", frame)
    _print_eval(ev)
    print(f"run {run.run_id}")
    return 0


def run_features(args) -> int:
    from data.progress import phase
    from data.store import RunStore
    from saes.corpus import corpus_tokens
    from saes.features import FEATURE_TABLES, feature_tables

    check_int("--top", args.top, 1)
    check_int("--bins", args.bins, 1)
    feats = list(parse_ints("--features", args.features)) if args.features is not None else None
    loaded, sae = _model_and_sae(args, "--tokens", args.tokens)
    _check_features(feats, sae)
    tokens = corpus_tokens(loaded, args.tokens, seed=0, split="heldout")
    store = RunStore(args.runs_dir)
    config = {"sae": str(args.sae), "layer": args.layer, "tokens": args.tokens,
              "top": args.top, "bins": args.bins, "features": feats}
    with store.start_run(command="sae features", model=loaded.name, config=config) as run:
        with phase(f"feature tables over {args.tokens} tokens (examples, histograms, DFA, "
                   "logit effects)"):
            ft = feature_tables(loaded, sae, args.layer, tokens, feats, args.top, args.bins)
        for field, name in FEATURE_TABLES.items():
            run.write_table(name, getattr(ft, field))
    n_feat = ft.dfa_heads.feature.nunique()
    print(f"{n_feat} features over {int(tokens.attention_mask.sum())} tokens -> run "
          f"{run.run_id}")
    print(head_summary_text(ft.head_summary))
    return 0


def _check_features(feats, sae) -> None:
    if feats and max(feats) >= sae.cfg.d_sae:
        raise UsageError(f"--features: {[f for f in feats if f >= sae.cfg.d_sae]} do not exist; "
                         f"the SAE has {sae.cfg.d_sae} features (0..{sae.cfg.d_sae - 1})")


def run_export(args) -> int:
    from data.progress import phase
    from saes.corpus import corpus_tokens
    from saes.export import ExportMeta, neuronpedia_batches, write_export
    from saes.features import feature_tables

    check_int("--top", args.top, 1)
    check_int("--bins", args.bins, 1)
    check_int("--per-file", args.per_file, 1)
    check_folder("--out", args.out)
    if not args.sae_set.strip():
        raise UsageError("--sae-set is empty: give a name, e.g. attnlab-att")
    feats = list(parse_ints("--features", args.features)) if args.features is not None else None
    loaded, sae = _model_and_sae(args, "--tokens", args.tokens)
    _check_features(feats, sae)
    tokens = corpus_tokens(loaded, args.tokens, seed=0, split="heldout")
    n_tokens = int(tokens.attention_mask.sum())
    meta = ExportMeta(loaded.name, args.layer, args.sae_set,
                      f"attnlab {loaded.name} held-out corpus, {n_tokens} tokens")
    with phase(f"feature data over {n_tokens} tokens"):
        ft = feature_tables(loaded, sae, args.layer, tokens, feats, args.top, args.bins)
        batches = neuronpedia_batches(loaded, sae, args.layer, tokens, ft, meta, args.per_file)
    exported = {f["feature_index"] for b in batches for f in b["features"]}
    wanted = feats if feats is not None else range(int(sae.cfg.d_sae))
    skipped = sorted(set(wanted) - exported)
    paths = write_export(args.out, batches, meta, skipped, n_tokens)
    print(f"{len(exported)} features in {len(batches)} batch file(s), {len(skipped)} never "
          f"active on {n_tokens} tokens listed in skipped_indexes.json -> {args.out}")
    print(f"files: {', '.join(p.name for p in paths)}")
    return 0


def head_summary_text(summary) -> str:
    """The per-head summary as text: one row per head (``L1H2``), one column per stat."""
    from data.notation import head_label

    grid = summary.pivot(index=["layer", "head"], columns="stat", values="value")
    grid.index = [head_label(la, h) for la, h in grid.index]
    grid.index.name = "head"
    return grid.to_string()


#: ``sae list`` columns: (header, cfg.json key path, format); quality = the shipped SAE's
#: evaluation on held-out tokens (metadata.quality).
LIST_COLUMNS = (("model", None, "{}"), ("layer", None, "{}"), ("arch", "architecture", "{}"),
                ("d_in", "d_in", "{}"), ("d_sae", "d_sae", "{}"), ("k", "k", "{}"),
                ("L0", "metadata.quality.l0", "{:.1f}"),
                ("EV", "metadata.quality.explained_variance", "{:.3f}"),
                ("CE rec.", "metadata.quality.ce_recovered", "{:.1%}"),
                ("cos", "metadata.quality.cos_sae", "{:.4f}"),
                ("dead", "metadata.quality.dead_frac", "{:.1%}"),
                ("tokens", "metadata.n_training_tokens", "{:,}"))


def _lookup(cfg: dict, path: str | None):
    for key in (path or "").split("."):
        cfg = cfg.get(key) if isinstance(cfg, dict) else None
    return cfg


def sae_list_table(rows) -> str:
    """The shipped SAEs as a text table, read from their cfg.json files (no torch, no weights):
    one row per SAE, '-' where a value does not apply (CE recovered: decoders; cos: the
    encoder's embedding cosine)."""
    import json

    header = [h for h, _, _ in LIST_COLUMNS] + ["folder"]
    table = [header]
    for model, layer, path in rows:
        cfg = json.loads((path / "cfg.json").read_text(encoding="utf-8"))
        line = []
        for name, key, fmt in LIST_COLUMNS:
            value = {"model": model, "layer": layer}.get(name) if key is None else \
                _lookup(cfg, key)
            line.append("-" if value is None else fmt.format(value))
        table.append(line + [str(path)])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)


def shipped_folders() -> list:
    """(model, layer, folder) of every SAE in data/saes, found without importing ``saes``
    (whose package imports torch: `attnlab sae list` reads cfg.json files only)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("data")
    roots = [Path(p) / "saes" for p in (spec.submodule_search_locations or [])] if spec else []
    return [(cfg.parent.parent.name, int(cfg.parent.name.removeprefix("layer")), cfg.parent)
            for root in roots for cfg in sorted(root.glob("*/layer*/cfg.json"))]


def run_list(args) -> int:
    rows = shipped_folders()
    if not rows:
        print("no shipped SAEs; `attnlab sae ship` trains them")
        return 0
    print(sae_list_table(rows))
    print("\nL0, EV (explained variance), CE rec. (loss recovered, decoders), cos (embedding "
          "cosine with the SAE, encoders), dead: on held-out tokens when shipped")
    return 0


def run_ship(args) -> int:
    from saes.shipped import read_recipe, ship

    layers = list(parse_ints("--layers", args.layers)) if args.layers is not None else None
    recipe = read_recipe()
    if args.model is not None and args.model not in recipe:
        raise UsageError(f"--model {args.model!r} is not in the SAE recipe: choose from "
                         f"{', '.join(sorted(recipe))}")
    for row in ship(model=args.model, layers=layers, device=args.device):
        print(row)
    return 0
