"""`attnlab report circuit`: a self-contained HTML + Markdown circuit report in a new run.

The report holds patching heatmaps, attribution vs exact, the top heads, path-patching roles
(IOI: name movers, S-inhibition, induction), the selective-impairment ablation table and the
SAE features of the top heads, as one HTML file that works offline plus a Markdown summary.
Heads are printed as L1H2.

    attnlab report circuit --model organism --task ioi
    attnlab report circuit --model organism --task recall --n 128 --out reports/
"""

from __future__ import annotations

from analyses.cli.options import add_command, add_model, add_sample, add_task


def register(sub, common) -> None:
    p = add_command(sub, common, "report", run, "write an offline HTML + Markdown report",
                    __doc__)
    p.add_argument("kind", choices=("circuit",), help="report kind")
    add_model(p)
    add_task(p)
    add_sample(p, "prompt pairs")
    p.add_argument("--top-k", type=int, default=3, help="heads per role / ablated set")
    p.add_argument("--n-random", type=int, default=5, help="random head sets (ablation)")
    p.add_argument("--ablation", default="mean", choices=("zero", "mean", "resample"))
    p.add_argument("--out", default=None, help="also copy report.html/report.md to this folder")


def run(args) -> int:
    from analyses.causal.circuit import CircuitConfig
    from analyses.figures.labels import with_head_column
    from analyses.reports.circuit import write_circuit_report
    from data.store import RunStore
    from probes.models import load_model

    loaded = load_model(args.model, device=args.device)
    config = CircuitConfig(task=args.task, n=args.n, seed=args.seed, top_k=args.top_k,
                           n_random=args.n_random, ablation=args.ablation)
    run_, analysis = write_circuit_report(loaded, config, RunStore(args.runs_dir), out=args.out)
    print(analysis.accuracy.round(4).to_string(index=False))
    print(f"top heads (attribution vs exact r = {analysis.attribution_r:.3f}):")
    print(with_head_column(analysis.top_heads.round(4)).to_string(index=False))
    print(f"report: {run_.path / 'report.html'} and report.md (run {run_.run_id})")
    if args.out:
        print(f"copied to {args.out}")
    return 0
