"""`attnlab report circuit`: a self-contained HTML + Markdown circuit report in a new run.

    attnlab report circuit --model organism --task ioi
    attnlab report circuit --model organism --task recall --n 128 --out reports/
"""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "report", parents=[common], help="write an offline HTML + Markdown report",
        description="Reports. `circuit`: patching heatmaps, attribution vs exact, top heads, "
        "path-patching roles (IOI: name movers, S-inhibition, induction), the "
        "selective-impairment ablation table and SAE features of the top heads, as one "
        "self-contained HTML file (works offline) plus a Markdown summary.",
    )
    p.add_argument("kind", choices=("circuit",), help="report kind")
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi")
    p.add_argument("--n", type=int, default=64, help="prompt pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=3, help="heads per role / ablated set")
    p.add_argument("--n-random", type=int, default=5, help="random head sets (ablation)")
    p.add_argument("--ablation", default="mean", choices=("zero", "mean", "resample"))
    p.add_argument("--out", default=None, help="also copy report.html/report.md to this folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from analyses.causal.circuit import CircuitConfig
    from analyses.reports.circuit import write_circuit_report
    from data.store import RunStore
    from probes.models import load_model

    loaded = load_model(args.model, device=args.device)
    config = CircuitConfig(task=args.task, n=args.n, seed=args.seed, top_k=args.top_k,
                           n_random=args.n_random, ablation=args.ablation)
    run_, analysis = write_circuit_report(loaded, config, RunStore(args.runs_dir), out=args.out)
    print(analysis.accuracy.round(4).to_string(index=False))
    print(f"top heads (attribution vs exact r = {analysis.attribution_r:.3f}):")
    print(analysis.top_heads.round(4).to_string(index=False))
    print(f"report: {run_.path / 'report.html'} and report.md (run {run_.run_id})")
    if args.out:
        print(f"copied to {args.out}")
    return 0
