"""Benchmark: streaming probes (capture + accumulators) vs run_with_cache + the same statistics.

    python benchmarks/probes.py [--batch 32] [--tokens 256] [--repeats 3] [--threads 1]

Same prompts (``--batch`` prompts of ~``--tokens`` tokens built from the built-in sentences)
through MiniLM in three modes, each in its own subprocess:

- ``plain``:   one forward pass, no hooks (the floor);
- ``capture``: :func:`probes.pipeline.run_probes` (entropy + massive + norms, one pass);
- ``cache``:   ``model.run_with_cache`` (every activation kept), then the same accumulators fed
  from the cache -- the straightforward way to get the same tables.

Peak memory: on CPU, torch allocates through the C allocator, which ``tracemalloc`` does not
see, so a thread samples the process RSS (psutil) every 0.5 ms; the figure is peak RSS minus
the RSS just before the mode runs (model loaded, prompts tokenised, one warm-up pass done).
Each mode runs in a fresh process so freed-but-cached memory of one does not hide another's.
Wall time: median over ``--repeats`` runs. On a GPU the same script would use
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

# Run as ``python benchmarks/X.py``, Python puts benchmarks/ first on sys.path, where this
# folder's probes.py would shadow the ``probes`` package: put the repository root there.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])


def make_prompts(tokenizer, n: int, n_tokens: int) -> list[str]:
    from data.sentences import builtin_sentences

    sents = builtin_sentences()
    prompts = []
    for i in range(n):
        ids: list[int] = []
        j = i * 7
        while len(ids) < n_tokens - 2:
            ids += tokenizer(sents[j % len(sents)], add_special_tokens=False)["input_ids"]
            j += 1
        prompts.append(tokenizer.decode(ids[: n_tokens - 2]))
    return prompts


class PeakRSS:
    """Samples RSS in a thread; ``peak - start`` is the mode's extra memory."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.0005)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def run_mode(mode: str, batch: int, n_tokens: int, repeats: int, threads: int) -> dict:
    import torch

    from probes.accumulators import HookPlan
    from probes.entropy import entropy_hooks
    from probes.massive import massive_hooks
    from probes.models import load_model
    from probes.norms import norm_hooks
    from probes.pipeline import run_probes
    from probes.tokens import forward, tokenize

    torch.set_num_threads(threads)
    loaded = load_model("minilm", device="cpu")
    prompts = make_prompts(loaded.tokenizer, batch, n_tokens)
    tokens = tokenize(loaded, prompts)
    model = loaded.model

    def cache_then_stats():
        plans = [entropy_hooks(model), massive_hooks(model), norm_hooks(model)]
        _, cache = model.run_with_cache(tokens.ids, one_zero_attention_mask=tokens.attention_mask)
        mask = tokens.bool_mask
        for plan in plans:
            for name, acc in plan.hooks.items():  # in forward order within each plan
                acc.update(cache[name], mask, hook=name, str_tokens=tokens.str_tokens)
        return [HookPlan.table(p) for p in plans]

    fns = {"plain": lambda: forward(loaded, tokens),
           "capture": lambda: run_probes(loaded, prompts, batch_size=batch),
           "cache": cache_then_stats}
    fn = fns[mode]
    with torch.inference_mode():
        forward(loaded, tokenize(loaded, prompts[:2]))  # warm-up
        times, peaks = [], []
        for _ in range(repeats):
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            del out
            peaks.append(mem.peak - mem.start)
    return {"mode": mode, "seconds": statistics.median(times), "peak_mb": max(peaks) / 2**20,
            "shape": list(tokens.ids.shape)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode:
        res = run_mode(args.mode, args.batch, args.tokens, args.repeats, args.threads)
        print(json.dumps(res))
        return 0
    results = {}
    for mode in ("plain", "capture", "cache"):
        out = subprocess.run(
            [sys.executable, __file__, "--mode", mode, "--batch", str(args.batch), "--tokens",
             str(args.tokens), "--repeats", str(args.repeats), "--threads", str(args.threads)],
            capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    shape = results["plain"]["shape"]
    print(f"MiniLM, batch {shape[0]} x {shape[1]} tokens, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print(f"{'mode':<10}{'wall s':>10}{'peak MB':>12}")
    for mode, r in results.items():
        print(f"{mode:<10}{r['seconds']:>10.2f}{r['peak_mb']:>12.0f}")
    cap, cache, plain = results["capture"], results["cache"], results["plain"]
    print(f"capture peak / run_with_cache+stats peak: {cap['peak_mb'] / cache['peak_mb']:.3f}"
          " (goal <= 0.25)")
    print(f"capture time / plain forward: {cap['seconds'] / plain['seconds']:.2f} (goal <= 1.2)")
    print(f"run_with_cache+stats time / plain forward: {cache['seconds'] / plain['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
