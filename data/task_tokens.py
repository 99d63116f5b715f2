"""The clean prompts' tokens of a task dataset as strings, to label position axes.

Result tables (``patching``) keep a position index, not the token at it; a figure over
positions wants the token. Within a task every prompt has the same length (see
:mod:`data.tasks`), so position ``i`` is the same slot of every prompt, but its token can
differ between prompts (IOI names): :func:`clean_prompt_tokens` returns the tokens of prompt
0 and which positions vary, so a caller can say that the labels come from prompt 0.
Why not ``HookedTransformer.to_str_tokens``: it needs a loaded model, which a dashboard page
reading a finished run does not have; the organism's vocabulary and SmolLM2's cached
tokenizer give the same strings without one.
"""

from __future__ import annotations

from typing import NamedTuple

from data.tasks import load_task, organism_world


class PromptTokens(NamedTuple):
    tokens: tuple[str, ...]  # clean prompt 0, one string per position (BOS at 0)
    varying: tuple[int, ...]  # positions whose token differs between the clean prompts


def clean_prompt_tokens(task: str, n: int, seed: int, model: str) -> PromptTokens:
    """Tokens of the first clean prompt of ``load_task(task, n, seed, model=model)``."""
    data = load_task(task, n, seed, model=model)
    ids = data.clean_tokens  # (batch, pos)
    if model == "organism":
        vocab = organism_world().vocab
        tokens = tuple(str(vocab[int(i)]) for i in ids[0])
    else:
        from data.smollm2 import load_tokenizer

        tok = load_tokenizer()
        tokens = tuple(tok.decode([int(i)]) for i in ids[0])
    varying = tuple(int(p) for p in (ids != ids[:1]).any(dim=0).nonzero().flatten())
    return PromptTokens(tokens, varying)
