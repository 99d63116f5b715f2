"""The training-recipe experiments of issue 20 (two-hop reasoning), reproducible.

Trains one organism recipe with the project's own trainer pieces (``data.organism``: the twin
net, batches, LR schedule, AdamW groups) and prints one JSON line of held-out accuracies every
``--every`` steps: the four task families (``make_items``, evaluation seed 10000, as the
trainer) and the reasoning hop probes (``data.organism.hops``). The curves in
``docs/organism/recipes.csv`` came from these runs (one thread each, two runs at a time, on a
2-core machine). Recipes differ in the model and in how reasoning rows are written
(``--reasoning``):

- ``old``: the shipped organism's rows (``reasoning_rows="v1"``: facts of 1-4 chains, one or
  two two-hop questions and one place question);
- ``partial3``: chains cut after one link with probability 1 - p, up to three person questions
  and one place question;
- ``dense``: ``data.organism.corpus.reasoning_text`` (a question on every subject);
  with ``--lookup-end S`` the rows ask one-hop questions only until step S (the shipped
  curriculum's ``lookup`` rows), and ``--p-complete-after`` changes the share of complete
  chains from then on;
- ``dense-at``: ``dense`` plus ``--at-questions`` one-hop questions per context in another
  phrasing, "so X is at" -> X's place, in every phase.

    python scripts/organism_recipes.py --layers 6 --lookup-end 3000 --steps 8000 > c1.jsonl
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from data.organism import corpus
from data.organism.config import ModelConfig, TrainConfig
from data.organism.corpus import FAMILIES, draw_chains, make_items
from data.organism.evaluate import encode_items, item_accuracy
from data.organism.hops import hop_accuracies
from data.organism.net import OrganismNet
from data.organism.train import EVAL_SEED, _optimizer, train_step
from data.organism.world import make_world


def partial3_text(rng, world, p_complete):
    n = rng.choices((1, 2, 3, 4), weights=(1, 2, 3, 2))[0]
    ch = draw_chains(rng, world, n, heldout=False, p_complete=p_complete)
    out = ch.words()
    for j in rng.sample(range(n), min(n, 3) if n < 4 else 2):
        out += ["so", ch.people[j], "is", "in", ch.end(j), "."]
    full = [j for j in range(n) if ch.complete[j]]
    if full:
        j = rng.choice(full)
        out += ["so", ch.places[j], "is", "in", ch.cities[j], "."]
    return out


def dense_at_text(rng, world, two_hop, n_at):
    """``dense`` rows plus ``n_at`` one-hop questions in another phrasing, "so X is at" -> X's
    place, so the first hop keeps its own training signal while "is in" asks for two hops."""
    n = rng.choices((1, 2, 3, 4), weights=(1, 2, 3, 3))[0]
    ch = draw_chains(rng, world, n, heldout=False, p_complete=corpus.REASONING_COMPLETE_P)
    queries = [(ch.people[j], "in", ch.end(j)) for j in range(n)
               if two_hop or not ch.complete[j]]
    queries += [(ch.places[j], "in", ch.cities[j]) for j in range(n) if ch.complete[j]]
    queries += [(ch.people[j], "at", ch.places[j]) for j in rng.sample(range(n), min(n, n_at))]
    rng.shuffle(queries)
    out = ch.words()
    for subject, relation, answer in queries:
        out += ["so", subject, "is", relation, answer, "."]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reasoning", choices=("old", "partial3", "dense", "dense-at"),
                   default="dense")
    p.add_argument("--at-questions", type=int, default=2, help="dense-at: 'is at' questions")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ctx", type=int, default=96)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--curriculum", type=int, default=1000, help="induction-only steps")
    p.add_argument("--lookup-end", type=int, default=0, help="one-hop rows until this step")
    p.add_argument("--mix", default="0.2,0.1,0.15,0.55", help="induction,ioi,recall,reasoning")
    p.add_argument("--p-complete", type=float, default=corpus.REASONING_COMPLETE_P)
    p.add_argument("--p-complete-after", type=float, default=None)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=TrainConfig.warmup, help="learning-rate warmup")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.reasoning == "partial3":
        corpus.REASONING_ROWS["dense"] = lambda rng, w: partial3_text(rng, w, a.p_complete)
    corpus.REASONING_COMPLETE_P = a.p_complete
    if a.reasoning == "dense-at":
        corpus.REASONING_ROWS["dense"] = lambda rng, w: dense_at_text(rng, w, True,
                                                                      a.at_questions)
        corpus.TEXT_MAKERS["lookup"] = lambda rng, w: dense_at_text(rng, w, False,
                                                                    a.at_questions)
    mix = dict(zip(FAMILIES, (float(x) for x in a.mix.split(","))))
    mc = ModelConfig(n_layers=a.layers, d_model=a.d_model, n_heads=a.heads,
                     d_mlp=4 * a.d_model, n_ctx=a.ctx)
    tc = TrainConfig(steps=a.steps, lr=a.lr, warmup=a.warmup, mix=mix,
                     curriculum_steps=a.curriculum,
                     lookup_steps=a.lookup_end, seed=a.seed,
                     reasoning_rows="v1" if a.reasoning == "old" else "dense")
    world = make_world(tc.world_seed, tc.n_people)
    torch.manual_seed(tc.seed)
    net = OrganismNet(mc, len(world.vocab))
    opt = _optimizer(net, tc)
    w2i = world.word_ids
    items = {f: encode_items(make_items(f, 256 if f == "reasoning" else 64, EVAL_SEED, world),
                             w2i) for f in FAMILIES}
    start = time.perf_counter()
    for step in range(tc.steps):
        if a.p_complete_after is not None and step == max(a.lookup_end, 1):
            corpus.REASONING_COMPLETE_P = a.p_complete_after
        loss = train_step(net, opt, world, mc, tc, step)
        if (step + 1) % a.every == 0 or step + 1 == tc.steps:
            with torch.no_grad():
                acc = {f: round(item_accuracy(net, t), 3) for f, t in items.items()}
                acc |= {f"hop_{h.probe}": round(h.accuracy, 3)
                        for h in hop_accuracies(net, world, n=128)}
            print(json.dumps({"step": step + 1, "seconds": round(time.perf_counter() - start),
                              "loss": round(loss.item(), 3), **acc}), flush=True)


if __name__ == "__main__":
    main()
