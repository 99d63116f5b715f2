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

**Sign convention.** Every sweep here is *noising*: a sender's path is patched from the ABC
run into the clean run, and ``effect = metric(patched) - metric(clean)``. A head whose path
carries the IO-vs-S logit difference therefore has a **negative** effect (patching it away
lowers the metric), so name movers, S-inhibition and induction/duplicate heads are the most
negative senders, and a **negative** name mover (a head that writes against the IO answer) has
a **positive** effect. ``normalized_effect`` = effect / (clean - ABC), so -1 removes the whole
clean logit difference.

**Which heads get a role, and the check against Wang et al.** A head gets a path-defined role
only when its effect has that role's sign (a top-k list is never padded with heads of the
wrong sign). Wang et al. define the roles by attention as well as by paths; each head is
checked against that part on the clean prompts (mean over prompts, END = the last position):
name movers (and negative name movers) attend from END to IO more than to S2; S-inhibition
heads attend from END to S2 more than to IO; induction / duplicate-token heads attend from S2
to S1+1 (induction) or S1 (duplicate) more than to IO. "More" also means more than uniform
attention would give that key (1 / keys seen), so two near-zero weights never fit. A head
whose path effect gives it a role but whose attention does not is kept with ``fits`` False and
a note saying what it attends to instead: the organism is not GPT-2, and a label is not forced
on it.
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

#: Role -> (sign of its noising effect, the attention Wang et al. describe for it:
#: (query position, key position it attends to more, than this key position)).
ROLE_RULES = {
    "name_mover": (-1, ("end", "io", "s2")),
    "negative_name_mover": (1, ("end", "io", "s2")),
    "s_inhibition": (-1, ("end", "s2", "io")),
    "induction_or_duplicate": (-1, ("s2", "s1_or_next", "io")),
}
SIGN_NOTE = ("noising (ABC -> clean): effect = metric(patched) - metric(clean); negative = the "
             "head's path carries the IO-vs-S logit difference")


class IOIResult(NamedTuple):
    roles: pd.DataFrame  # role, layer, head, effect, normalized_effect, receivers, method,
    # attention (the check's numbers), fits (bool), note
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
    w2i = world.word_ids
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
    """Top k senders by effect with that sign only (most negative for a role that carries
    the logit difference under noising; most positive for a negative name mover)."""
    signed = table[table.effect < 0] if negative else table[table.effect > 0]
    return signed.sort_values("effect", ascending=negative).head(k)


class NamePositions(NamedTuple):
    """Per prompt (batch,) long: where IO, S1 and S2 sit, and the last position (END)."""

    io: torch.Tensor
    s1: torch.Tensor
    s2: torch.Tensor
    end: torch.Tensor


def name_positions(pair: PatchPair, name_ids: set[int]) -> NamePositions:
    """IO, S1, S2 positions of the clean prompts: S is the token that ``abc_pair`` replaced
    (twice), IO the first position of a token the ABC run keeps that the metric rewards."""
    clean, corr = pair.clean, pair.corrupted
    io, s1, s2 = [], [], []
    for b in range(clean.shape[0]):
        changed = (clean[b] != corr[b]).nonzero().flatten().tolist()
        s1.append(changed[0])
        s2.append(changed[-1])
        s_tok = int(clean[b, changed[0]])
        names = [i for i in range(changed[-1]) if i not in changed and
                 int(clean[b, i]) != s_tok and int(clean[b, i]) in name_ids]
        io.append(names[0] if names else -1)
    t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return NamePositions(t(io), t(s1), t(s2), t([clean.shape[1] - 1] * clean.shape[0]))


def attention_checks(model, pair: PatchPair, heads: list[tuple[int, int]],
                     name_ids: set[int]) -> dict:
    """(layer, head) -> the mean attention weights Wang et al.'s role definitions compare:
    END->IO, END->S2, S2->S1, S2->S1+1, S2->IO (clean prompts, mean over prompts), and the
    weight that uniform attention would give one key from END and from S2."""
    from probes.hooks import record

    if not heads:
        return {}
    pos = name_positions(pair, name_ids)
    ok = pos.io >= 0
    layers = sorted({la for la, _ in heads})
    names = [f"blocks.{la}.attn.hook_pattern" for la in layers]
    with torch.no_grad():
        acts = record(model, names, lambda: model(pair.clean)).acts
    rows = torch.arange(pair.clean.shape[0])[ok]
    p = {k: v[ok] for k, v in pos._asdict().items()}
    out = {}
    pairs = {"end->io": ("end", p["io"]), "end->s2": ("end", p["s2"]),
             "s2->s1": ("s2", p["s1"]), "s2->s1+1": ("s2", p["s1"] + 1),
             "s2->io": ("s2", p["io"])}
    b = torch.arange(len(rows))
    for la, h in heads:
        pat = acts[f"blocks.{la}.attn.hook_pattern"][rows, h].float()  # (batch, pos, key_pos)
        out[(la, h)] = {name: float(pat[b, p[q], k].mean()) if len(rows) else float("nan")
                        for name, (q, k) in pairs.items()}
        for q in ("end", "s2"):  # uniform attention over the keys a query position sees
            out[(la, h)][f"uniform@{q}"] = float((1.0 / (p[q] + 1).float()).mean())
    return out


def check_role(role: str, att: dict) -> tuple[bool, str]:
    """Whether ``att`` (:func:`attention_checks` of one head) shows the attention that Wang
    et al. describe for ``role``, and a note in words."""
    _, (query, more, than) = ROLE_RULES[role]
    uniform = att[f"uniform@{query}"]
    if query == "end":
        a, b = att[f"end->{more}"], att[f"end->{than}"]
        said = f"END->{more.upper()} {a:.2f} vs END->{than.upper()} {b:.2f}"
    else:
        a, b = max(att["s2->s1"], att["s2->s1+1"]), att["s2->io"]
        said = (f"S2->S1 {att['s2->s1']:.2f}, S2->S1+1 {att['s2->s1+1']:.2f} vs S2->IO "
                f"{b:.2f}")
    fits = a > b and a > uniform  # more than the other name, and more than no preference
    said += f"; uniform {uniform:.2f}"
    words = role.replace("_", " ")
    note = (f"attention fits Wang et al.'s {words} ({said})" if fits else
            f"path effect only: its attention does not fit Wang et al.'s {words} ({said}); "
            "the organism is not GPT-2 small")
    return fits, note


def ioi_circuit(model, dataset, k: int = 3, name_ids: set[int] | None = None,
                seed: int = 0, depth: int = 3) -> IOIResult:
    """Name movers, S-inhibition and induction/duplicate-token candidates (k of each).

    ``depth``: how many levels to search (1 name movers, 2 + S-inhibition, 3 + induction).
    ``name_ids``: default :func:`task_name_ids` of the dataset's model.
    """
    if depth not in (1, 2, 3):
        raise ValueError(f"depth must be 1, 2 or 3, got {depth}")
    model = unwrap(model)
    if name_ids is None:
        name_ids = task_name_ids(model, dataset)
    pair = abc_pair(dataset, name_ids, seed)
    cfg = dict(method="noising", freeze_mlps=True)
    direct = path_patch(model, pair, PathPatchingConfig(**cfg))
    movers = _strongest(direct, k)
    receivers = tuple(Receiver(int(r.layer), int(r.head), ("q",)) for r in movers.itertuples())
    rows = [("name_mover", r) for r in movers.itertuples()]
    rows += [("negative_name_mover", r) for r in _strongest(direct, 1, False).itertuples()]
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
    return IOIResult(roles_table(model, pair, rows, name_ids), pd.concat(tables, ignore_index=True),
                     pair)


def roles_table(model, pair: PatchPair, rows, name_ids: set[int]) -> pd.DataFrame:
    """The roles, each checked against Wang et al.'s attention (:func:`check_role`)."""
    att = attention_checks(model, pair, sorted({(int(r.layer), int(r.head)) for _, r in rows}),
                           name_ids)
    out = []
    for role, r in rows:
        a = att[(int(r.layer), int(r.head))]
        fits, note = check_role(role, a)
        out.append((role, int(r.layer), int(r.head), float(r.effect), float(r.normalized_effect),
                    r.receivers, "noising", ", ".join(f"{k} {v:.3f}" for k, v in a.items()),
                    fits, note))
    return pd.DataFrame(out, columns=["role", "layer", "head", "effect", "normalized_effect",
                                      "receivers", "method", "attention", "fits", "note"])
