"""`attnlab demo`: one command that fills every dashboard page (1-2 minutes on 2 CPU cores).

    attnlab demo                      # all stages: probes, smollm2, redundancy, circuits, sae
    attnlab demo --quick              # only the MiniLM probes (the old minimal demo)
    attnlab demo --only circuits,sae  # some stages

Each stage (:mod:`analyses.cli.demo`) writes its own run: MiniLM probes (checked against the
HF model they were converted from), SmolLM2-135M-Instruct's probes and IOI attribution
patching (Q4_1 quantisation), the organism's redundancy study, its IOI
circuit report and its shipped SAE's feature tables. Prints each stage's run and time, then
the command that opens the dashboard.
"""

from __future__ import annotations

import time

from analyses.cli.checks import (
    MAX_ITEMS,
    MAX_TOKENS,
    check_float,
    check_int,
    check_unique,
    conflict,
    given,
)
from analyses.cli.options import add_command

SIZES = ("default sample sizes keep the whole demo at about a minute of CPU (measured 73 s "
         "CPU, 198 s wall on a 2-core machine at load 7; the SmolLM2 cache already built): "
         "CPU time smollm2 ~16 s, probes ~4 s, interventions ~3 s, redundancy ~30 s, edges "
         "~1 s, circuits ~10 s, sae ~8 s")
HELP = ("fill every dashboard page: probes (MiniLM, SmolLM2), redundancy, circuit report, SAE "
        "features (~1-2 min)")
DESCRIPTION = (
    "Run every analysis on a small sample and write one run per dashboard page: MiniLM probes "
    "(entropy, massive activations, head norms, sinks) over the built-in sentences; "
    "SmolLM2-135M-Instruct (Q4_1) probes over 32 of them and IOI attribution patching of its "
    "270 heads over 8 prompt pairs; the organism's "
    "redundancy study, IOI circuit report and shipped-SAE feature tables. "
    f"The {SIZES}; larger samples: the individual commands (attnlab probe / redundancy / "
    "report circuit / sae features). Heads are printed as L1H2.")


def register(sub, common) -> None:
    p = add_command(sub, common, "demo", run, HELP, DESCRIPTION)
    p.add_argument("--only", default=None,
                   help="comma-separated stages: smollm2,probes,interventions,redundancy,edges,"
                   "circuits,sae (default: all)")
    p.add_argument("--quick", action="store_true",
                   help="only the MiniLM probes (same as --only probes, ~15 s)")
    p.add_argument("--n-sentences", type=int, default=None,
                   help="probes: use only the first N built-in sentences (default: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="probes, smollm2: sentences per batch (default 32)")
    p.add_argument(
        "--massive-ratio", type=float, default=None,
        help="probes: ratio-to-median threshold for massive activations (default 100: MiniLM's "
        "massive dim 99 is ~300-600x its median, below Sun et al.'s ~1000x for large LLMs)",
    )
    p.add_argument("--n-items", type=int, default=None,
                   help="redundancy/circuits: organism task items (prompt pairs) per task "
                   "(default 64)")
    p.add_argument("--sae-tokens", type=int, default=None,
                   help="sae: held-out organism tokens scanned for the feature tables "
                   "(default 10000)")


#: The options that size one stage or more: typing one for stages that do not run is an error.
STAGE_OPTIONS = {"n_sentences": ("probes",), "batch_size": ("probes", "smollm2"),
                 "massive_ratio": ("probes",), "n_items": ("redundancy", "circuits"),
                 "sae_tokens": ("sae",)}


def check_demo(args) -> tuple[str, ...]:
    """Every argument, before any model loads: the stages to run, in run order."""
    from analyses.cli.demo import STAGE_NAMES, parse_stages

    if args.quick and args.only is not None:
        raise conflict("--quick", "--only", "--quick is --only probes; give one of them")
    only = "probes" if args.quick else args.only or ",".join(STAGE_NAMES)
    stages = parse_stages(only)
    check_unique("--only", [s.strip() for s in only.split(",") if s.strip()])
    for name, used_by in STAGE_OPTIONS.items():
        for flag in given(args, name):
            if not set(used_by) & set(stages):
                raise conflict(flag, "--quick" if args.quick else f"--only {only}",
                               f"it sizes the {' and '.join(used_by)} stage(s), which do "
                               "not run")
    check_int("--n-items", args.n_items, None, MAX_ITEMS)
    check_int("--sae-tokens", args.sae_tokens, None, MAX_TOKENS)
    check_float("--massive-ratio", args.massive_ratio, 0.0)
    return stages


def run(args) -> int:
    """The stages, on ``--threads`` torch threads (the common option, set before this runs;
    the demo's models are small: on a shared 2-core machine 2 threads measured 3.5x more CPU
    and wall time than 1)."""
    from analyses.cli.demo import DemoConfig

    stages = check_demo(args)
    sizes = {"n_sentences": args.n_sentences, "batch_size": args.batch_size,
             "massive_ratio": args.massive_ratio, "n_items": args.n_items,
             "sae_tokens": args.sae_tokens, "device": args.device}
    cfg = DemoConfig(**{k: v for k, v in sizes.items() if v is not None})
    return run_stages(args, stages, cfg)


def run_stages(args, stages: tuple[str, ...], cfg) -> int:
    from analyses.cli.demo import SKIPPABLE_STAGES, Models, run_stage
    from data.store import RunStore
    from probes.models import ModelNotAvailable

    t0, c0 = time.perf_counter(), time.process_time()
    store, models = RunStore(args.runs_dir), Models(args.device)
    results, skipped = [], []
    for name in stages:
        print(f"[demo] {name} ...", flush=True)
        try:
            res = run_stage(name, store, cfg, models)
        except ModelNotAvailable as exc:
            if name not in SKIPPABLE_STAGES:
                raise
            skipped.append(f"{name}: {exc}")
            print(f"[demo] {name} skipped: {exc}", flush=True)
            continue
        results.append(res)
        print(f"[demo] {name} done in {res.wall_s:.1f} s ({res.cpu_s:.1f} s CPU): "
              f"run {res.run_id}", flush=True)
    print_summary(results, skipped, store.root, time.perf_counter() - t0,
                  time.process_time() - c0)
    return 1 if skipped else 0


def print_summary(results, skipped: list[str], root, wall: float, cpu: float) -> None:
    print(f"\n{len(results)} stage(s) written to {root} in {wall:.0f} s wall, {cpu:.0f} s CPU "
          "(model loading and imports included)")
    for r in results:
        print(f"\n{r.stage:<11} {r.wall_s:5.1f} s wall {r.cpu_s:5.1f} s CPU  run {r.run_id}")
        for line in r.lines:
            print(f"  {line}")
    for line in skipped:
        print(f"\nSKIPPED {line}")
    print(f"\nopen the dashboard:  attnlab dashboard --runs-dir {root}")
