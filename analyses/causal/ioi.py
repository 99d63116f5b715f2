"""An IOI circuit analysis by path patching (Wang et al. 2022), for the organism.

Wang et al. find the circuit top-down with path patching from the "ABC" distribution (the
same sentences with the subject's two occurrences replaced by two fresh names, so nothing
says which name is the indirect object) into the clean run (noising):

1. **name movers**: heads whose direct path to the logits carries the IO-vs-S logit
   difference (large negative noising effect; a positive one marks *negative* name movers);
2. **S-inhibition heads**: heads whose path into the name movers' queries matters;
3. **induction / duplicate-token heads**: heads whose path into the S-inhibition heads'
   keys/values matters (in GPT-2 small they sit below S-inhibition, Wang et al. 2022).

Metric: logit(IO) - logit(S) at the last position. Paths are direct (MLPs frozen).

    >>> res = ioi_circuit(model, load_task("ioi", n=64), k=3)
    >>> res.roles   # role, layer, head, effect
"""

from __future__ import annotations

import random
from typing import NamedTuple

import pandas as pd
import torch

from analyses.causal.patching import PatchPair
from analyses.causal.path_patching import PathPatchingConfig, Receiver, path_patch
from probes.models import unwrap


class IOIResult(NamedTuple):
    roles: pd.DataFrame  # role, layer, head, effect, normalized_effect
    paths: pd.DataFrame  # the three path-patching sweeps (schema `patching`)
    pair: PatchPair  # clean vs ABC, metric logit(IO) - logit(S)


def abc_pair(dataset, name_ids: set[int], seed: int = 0) -> PatchPair:
    """Clean IOI prompts vs the same prompts with both subject tokens replaced by fresh names.

    The subject is the name token that occurs twice; ``name_ids`` are the vocabulary ids of
    names (the candidates for replacements).
    """
    clean = dataset.clean_tokens
    io = dataset.answer_ids
    corrupted, s_ids = clean.clone(), []
    rng = random.Random(seed)
    pool = sorted(name_ids)
    for b in range(clean.shape[0]):
        row = clean[b].tolist()
        dup = [t for t in set(row) if t in name_ids and row.count(t) == 2]
        if len(dup) != 1:
            raise ValueError(f"IOI prompt {b} has no unique repeated name (the subject): {row}")
        s = dup[0]
        fresh = rng.sample([t for t in pool if t not in (s, int(io[b]))], 2)
        where = [i for i, t in enumerate(row) if t == s]
        for pos, new in zip(where, fresh):
            corrupted[b, pos] = new
        s_ids.append(s)
    s_ids = torch.tensor(s_ids)

    def io_minus_s(logits):
        last = logits[:, -1]  # (batch, d_vocab)
        return (last.gather(1, io[:, None].to(last.device))
                - last.gather(1, s_ids[:, None].to(last.device)))[:, 0]

    return PatchPair(clean, corrupted, io_minus_s, task="ioi_abc", metric_name="logit_io_minus_s")


def organism_name_ids(model) -> set[int]:
    """Vocabulary ids of the organism world's person names."""
    from data.tasks import organism_world

    world = organism_world()
    w2i = {w: i for i, w in enumerate(world.vocab)}
    return {w2i[n] for n in world.names}


def _strongest(table: pd.DataFrame, k: int, negative: bool = True) -> pd.DataFrame:
    """Top k senders by effect (most negative for noising), excluding nothing."""
    return table.sort_values("effect", ascending=negative).head(k)


def ioi_circuit(model, dataset, k: int = 3, name_ids: set[int] | None = None,
                seed: int = 0) -> IOIResult:
    """Name movers, S-inhibition and induction/duplicate-token candidates (k of each)."""
    model = unwrap(model)
    pair = abc_pair(dataset, name_ids if name_ids is not None else organism_name_ids(model),
                    seed)
    cfg = dict(method="noising", freeze_mlps=True)
    direct = path_patch(model, pair, PathPatchingConfig(**cfg))
    movers = _strongest(direct, k)
    receivers = tuple(Receiver(int(r.layer), int(r.head), ("q",)) for r in movers.itertuples())
    rows = [("name_mover", r) for r in movers.itertuples()]
    rows += [("negative_name_mover", r) for r in _strongest(direct, 1, False).itertuples()
             if r.effect > 0]
    tables = [direct]
    if any(r.layer > 0 for r in receivers):
        inhib = path_patch(model, pair, PathPatchingConfig(
            tuple(r for r in receivers if r.layer > 0), **cfg))
        s_inh = _strongest(inhib, k)
        rows += [("s_inhibition", r) for r in s_inh.itertuples()]
        tables.append(inhib)
        kv = tuple(Receiver(int(r.layer), int(r.head), ("k", "v")) for r in s_inh.itertuples()
                   if r.layer > 0)
        if kv:
            dup = path_patch(model, pair, PathPatchingConfig(kv, **cfg))
            rows += [("induction_or_duplicate", r) for r in _strongest(dup, k).itertuples()]
            tables.append(dup)
    roles = pd.DataFrame([(role, int(r.layer), int(r.head), float(r.effect),
                           float(r.normalized_effect), r.receivers) for role, r in rows],
                         columns=["role", "layer", "head", "effect", "normalized_effect",
                                  "receivers"])
    return IOIResult(roles, pd.concat(tables, ignore_index=True), pair)
