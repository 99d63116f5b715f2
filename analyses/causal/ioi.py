"""An IOI circuit analysis by path patching (Wang et al. 2022), for the organism and SmolLM2.

Wang et al. find the circuit top-down with path patching from the "ABC" distribution (the
same sentences with the subject's two occurrences replaced by two fresh names, so nothing
says which name is the indirect object) into the clean run (noising):

1. **name movers**: heads whose direct path to the logits carries the IO-vs-S logit
   difference (large negative noising effect; a positive one marks *negative* name movers);
2. **S-inhibition heads**: heads whose path into the name movers' queries matters;
3. **induction / duplicate-token heads**: heads whose path into the S-inhibition heads'
   keys/values matters (in GPT-2 small they sit below S-inhibition, Wang et al. 2022).

Metric: logit(IO) - logit(S) at the last position. Paths are direct (MLPs frozen).
``depth`` stops the search after the name movers (1) or the S-inhibition heads (2): each
level is one more path-patching sweep, which costs minutes on a 30-layer model on CPU.

The roles are named by measured effect along these paths only; a head found here is not the
same head as in GPT-2 small, and nothing is labelled by analogy.

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
        # (batch, pos, d_vocab) -> its last position; (batch, d_vocab): already taken there
        last = logits[:, -1] if logits.ndim == 3 else logits  # (batch, d_vocab)
        return (last.gather(1, io[:, None].to(last.device))
                - last.gather(1, s_ids[:, None].to(last.device)))[:, 0]

    last_pos = torch.full((clean.shape[0],), clean.shape[1] - 1, dtype=torch.long)
    return PatchPair(clean, corrupted, io_minus_s, task="ioi_abc", metric_name="logit_io_minus_s",
                     score_pos=last_pos)


def organism_name_ids(model) -> set[int]:
    """Vocabulary ids of the organism world's person names."""
    from data.tasks import organism_world

    world = organism_world()
    w2i = {w: i for i, w in enumerate(world.vocab)}
    return {w2i[n] for n in world.names}


def task_name_ids(model, dataset) -> set[int]:
    """The name ids of ``dataset``'s vocabulary: the organism world's, or SmolLM2's IOI names.

    ``dataset.model`` (``data.tasks.TaskDataset``; the organism when absent) says whose
    vocabulary the tokens are in.
    """
    which = getattr(dataset, "model", "organism")
    if which == "organism":
        return organism_name_ids(model)
    if which == "smollm2":
        from data.smollm2 import load_tokenizer
        from data.text_tasks import name_ids

        return name_ids(load_tokenizer())
    raise ValueError(f"no IOI names known for model {which!r}: pass name_ids")


def _strongest(table: pd.DataFrame, k: int, negative: bool = True) -> pd.DataFrame:
    """Top k senders by effect (most negative for noising), excluding nothing."""
    return table.sort_values("effect", ascending=negative).head(k)


def ioi_circuit(model, dataset, k: int = 3, name_ids: set[int] | None = None,
                seed: int = 0, depth: int = 3) -> IOIResult:
    """Name movers, S-inhibition and induction/duplicate-token candidates (k of each).

    ``depth``: how many levels to search (1 name movers, 2 + S-inhibition, 3 + induction).
    ``name_ids``: default :func:`task_name_ids` of the dataset's model.
    """
    if depth not in (1, 2, 3):
        raise ValueError(f"depth must be 1, 2 or 3, got {depth}")
    model = unwrap(model)
    pair = abc_pair(dataset, name_ids if name_ids is not None else
                    task_name_ids(model, dataset), seed)
    cfg = dict(method="noising", freeze_mlps=True)
    direct = path_patch(model, pair, PathPatchingConfig(**cfg))
    movers = _strongest(direct, k)
    receivers = tuple(Receiver(int(r.layer), int(r.head), ("q",)) for r in movers.itertuples())
    rows = [("name_mover", r) for r in movers.itertuples()]
    rows += [("negative_name_mover", r) for r in _strongest(direct, 1, False).itertuples()
             if r.effect > 0]
    tables = [direct]
    if depth >= 2 and any(r.layer > 0 for r in receivers):
        inhib = path_patch(model, pair, PathPatchingConfig(
            tuple(r for r in receivers if r.layer > 0), **cfg))
        s_inh = _strongest(inhib, k)
        rows += [("s_inhibition", r) for r in s_inh.itertuples()]
        tables.append(inhib)
        kv = tuple(Receiver(int(r.layer), int(r.head), ("k", "v")) for r in s_inh.itertuples()
                   if r.layer > 0)
        if depth >= 3 and kv:
            dup = path_patch(model, pair, PathPatchingConfig(kv, **cfg))
            rows += [("induction_or_duplicate", r) for r in _strongest(dup, k).itertuples()]
            tables.append(dup)
    roles = pd.DataFrame([(role, int(r.layer), int(r.head), float(r.effect),
                           float(r.normalized_effect), r.receivers) for role, r in rows],
                         columns=["role", "layer", "head", "effect", "normalized_effect",
                                  "receivers"])
    return IOIResult(roles, pd.concat(tables, ignore_index=True), pair)
