"""`attnlab report circuit`: a self-contained HTML + Markdown circuit report in a new run.

The report holds patching heatmaps, attribution vs exact, the top heads, path-patching roles
(IOI: name movers, S-inhibition, induction), the selective-impairment ablation table and the
SAE features of the top heads, as one HTML file that works offline plus a Markdown summary.
Heads are printed as L1H2.

    attnlab report circuit --model organism --task ioi
    attnlab report circuit --model organism --task recall --n 128 --out reports/
    attnlab report circuit --model smollm2 --task ioi

On smollm2 (30 layers x 9 heads; exact patching runs on the fast engine) the defaults bound
the cost: 32 pairs for accuracy, attribution and ablations, exact sweeps and path patching on
the first 8 (--n-exact), head outputs denoising only, sublayers by layer, path patching down
to the name movers, 3 random head sets, and selective impairment contrasting recall with ioi
(smollm2 does not do reasoning). The report and its manifest say what ran.

``--nproc N`` shards the pairs of the exact sweeps and attribution over N processes (equal to
one process up to float rounding); rank 0 writes the run and the report.
"""

from __future__ import annotations

from analyses.cli.checks import (
    MAX_ITEMS,
    UsageError,
    check_folder,
    check_head_count,
    check_int,
    check_task_sample,
)
from analyses.cli.commands.patch_cmd import IMPAIRMENT_TASKS_HELP, parse_impairment_tasks
from analyses.cli.options import add_command, add_model, add_sample, add_task


def register(sub, common) -> None:
    p = add_command(sub, common, "report", run, "write an offline HTML + Markdown report",
                    __doc__)
    p.add_argument("kind", choices=("circuit",), help="report kind")
    add_model(p)
    add_task(p)
    add_sample(p, "prompt pairs (smollm2: 32)")
    p.add_argument("--n-exact", type=int, default=None,
                   help="pairs (the first of --n) of the exact sweeps and path patching "
                   "(default: --n; smollm2: 8)")
    p.add_argument("--impairment-tasks", default=None, help=IMPAIRMENT_TASKS_HELP)
    p.set_defaults(n=None)  # the model's default (analyses.causal.circuit.default_config)
    p.add_argument("--top-k", type=int, default=3, help="heads per role / ablated set")
    p.add_argument("--n-random", type=int, default=None,
                   help="random head sets (ablation; default 5, smollm2: 3)")
    p.add_argument("--ablation", default="mean", choices=("zero", "mean", "resample"))
    p.add_argument("--out", default=None, help="also copy report.html/report.md to this folder")


def check_report(args) -> None:
    """Every argument, before the model loads."""
    check_task_sample(args, "circuit reports need a decoder with task datasets; use "
                      "`attnlab patch --model minilm` instead", min_n=2)
    check_int("--top-k", args.top_k, 1)
    check_int("--n-random", args.n_random, 0)
    check_int("--n-exact", args.n_exact, 2, MAX_ITEMS)
    if None not in (args.n, args.n_exact) and args.n_exact > args.n:
        raise UsageError(f"--n-exact {args.n_exact} is more than --n {args.n}: the exact "
                         "sweeps run on the first --n-exact of the --n pairs")
    parse_impairment_tasks(args)
    check_folder("--out", args.out)


def run(args) -> int:
    from analyses.causal.circuit import analyse_circuit, default_config
    from analyses.figures.labels import with_head_column
    from analyses.reports.circuit import CAVEAT, caveats_of, write_circuit_report
    from analyses.reports.readout import circuit_readout
    from data.progress import interactive, phase
    from data.store import RunStore
    from probes.models import load_model

    check_report(args)
    config = default_config(args.model, task=args.task, n=args.n, seed=args.seed,
                            top_k=args.top_k, n_random=args.n_random, ablation=args.ablation,
                            n_exact=args.n_exact,
                            impairment_tasks=parse_impairment_tasks(args))
    print(f"report circuit {args.model} / {config.task}: {config.n} pairs, exact sweeps on "
          f"{config.exact_pairs}, {config.n_random} random head sets")
    with phase(f"loading {args.model}"):
        loaded = load_model(args.model, device=args.device)
    check_head_count("--top-k", args.top_k, loaded.cfg)
    from probes.distributed import rank_info  # --nproc: rank 0 writes the run and the report

    if not rank_info().is_main:  # the same analysis (its sweeps sharded), nothing written
        analyse_circuit(loaded, config, progress=False)
        return 0
    run_, analysis = write_circuit_report(loaded, config, RunStore(args.runs_dir), out=args.out,
                                          progress=interactive())
    print("readout:")
    for line in circuit_readout(analysis, caveats_of(analysis)):
        print(f"  {line}")
    print(analysis.accuracy.round(4).to_string(index=False))
    print(f"top heads (attribution vs exact r = {analysis.attribution_r:.3f}):")
    print(with_head_column(analysis.top_heads.round(4)).to_string(index=False))
    for note in analysis.notes:
        if not note.startswith(CAVEAT):  # the readout said those
            print(f"- {note}")
    print(f"analysis wall time {analysis.seconds:.0f} s")
    print(f"report: {run_.path / 'report.html'} and report.md (run {run_.run_id})")
    if args.out:
        print(f"copied to {args.out}")
    return 0
