"""Clean/corrupted prompt pairs on real English text, for a causal LM with a BPE tokenizer.

Why it exists: the organism's tasks (:mod:`data.organism.corpus`) are written in its own
word vocabulary; a real LM such as SmolLM2 needs the same four families as ordinary text.
:func:`data.tasks.load_task` turns these items into a ``TaskDataset``
(``load_task(name, n, seed, model="smollm2")``).

Every item is a pair of prompts of equal token length that differ in ONE token, each with a
single-token answer, the two answers different; BOS (``<|endoftext|>``, id 0) is at position 0
and the scored position is the last one. All prompts of a family have one fixed length (it
does not depend on ``n`` or ``seed``), so datasets need no padding and a dataset drawn with
another seed can serve as a mean-ablation reference.

- ``ioi``: Wang et al. 2022's templates (:data:`data.text_lexicon.IOI_TEMPLATES`), ABBA and
  BABA orders, single-token names. Answer: the indirect object (IO). Corruption ("ABC"): the
  second mention of the subject (S2) becomes a third name, so three distinct names appear once
  each and nothing says which of the first two is the IO. The corrupted answer is S, so the
  logit difference is logit(IO) - logit(S) on both prompts (about 0 on the corrupted one for a
  model without a name bias).
- ``induction``: ``[BOS, t_1 .. t_L, t_1 .. t_k]`` -> ``t_{k+1}`` with ``L`` distinct random
  tokens: no meaning to use, only the copy. The tokens are ordinary words: the lower-case words
  (>= 3 letters) of attnlab's built-in sentences (:mod:`data.sentences`) that are one token
  with their leading space (~900). (An id range of ``" xxx"`` BPE tokens was tried first; it
  holds word fragments such as " toler" and " econom".) Corruption: the first-half occurrence
  of ``t_{k+1}`` becomes a fresh word ``w``, whose copy is the corrupted answer (the organism's
  design, so the two models' results compare).
- ``recall``: ``"The capital of France is"`` -> ``" Paris"`` over the hand-written
  :data:`data.text_lexicon.CAPITALS`; corruption: another subject of the same kind (country,
  US state, region), one token like the first.
- ``reasoning``: in-context retrieval of one of :data:`REASONING_BINDINGS` bindings
  ``"NAME lives in CITY."`` (random names and cities, so the queried binding's place in the
  context is random), then the start of the queried name's sentence, each binding queried
  equally often in expectation::

      Three friends live in different cities. Luke lives in Dallas. Anna lives in Rome. Joe
      lives in Miami. Anna lives in                         -> " Rome"

  Corruption: another of the bound names is queried (the context is untouched), answer its
  city. The shortcuts "last city mentioned" and "first city mentioned" score ~1/3
  (:func:`shortcut_baselines`). SmolLM2-135M does NOT do this task (top-1 ~0.03: it answers
  from its prior, " New", " London"), so it is not among SmolLM2's default tasks. A question
  form (the context, then a line ``Question: Where does Anna live?`` and a line ``Answer:``)
  was tried as the one redesign; it scored lower still (top-1 0.01, the model ends its turn
  with ``<|im_end|>``) and separated clean from corrupted less, so the continuation form
  stays.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data.sentences import builtin_sentences
from data.smollm2 import BOS_ID
from data.text_lexicon import CAPITALS, CITIES, IOI_TEMPLATES, NAMES, OBJECTS, PLACES

TEXT_TASKS: tuple[str, ...] = ("induction", "ioi", "recall", "reasoning")
INDUCTION_LEN, INDUCTION_K = 20, 10  # sequence length L; the prompt repeats its first k tokens
REASONING_BINDINGS = 3
_WORD = re.compile(r"\b[a-z]{3,}\b")
_BINDING = re.compile(r" (\w+) lives in (\w+)\.")


@dataclass(frozen=True)
class TextItem:
    """One clean/corrupted pair as token ids (BOS first) with its text and answers."""

    clean: tuple[int, ...]
    corrupted: tuple[int, ...]
    answer: int  # next-token id on the clean prompt
    corrupted_answer: int  # next-token id the metric compares against
    clean_prompt: str  # without BOS
    corrupted_prompt: str
    answer_text: str  # e.g. " Mary"
    corrupted_answer_text: str
    variant: str  # template/order/kind: lets analyses split results

    def __post_init__(self) -> None:
        if len(self.clean) != len(self.corrupted):
            raise ValueError(f"clean and corrupted differ in length: {self.clean_prompt!r} vs "
                             f"{self.corrupted_prompt!r}")
        n_diff = sum(a != b for a, b in zip(self.clean, self.corrupted))
        if n_diff != 1:
            raise ValueError(f"{n_diff} tokens differ, expected 1: {self.clean_prompt!r}")
        if self.answer == self.corrupted_answer:
            raise ValueError(f"answers must differ: {self.answer_text!r}")


class Encoder:
    """The tokenizer as the tasks need it: BOS-prefixed prompts and strictly 1-token words."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def prompt(self, text: str) -> tuple[int, ...]:
        return (BOS_ID, *self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def word(self, word: str) -> int:
        """The id of ``" " + word``; ValueError unless it is exactly one token."""
        ids = self.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{' ' + word!r} is {len(ids)} tokens, expected 1")
        return ids[0]

    def induction_pool(self) -> list[int]:
        """Sorted ids of the built-in sentences' lower-case words that are one token."""
        words = {w for s in builtin_sentences() for w in _WORD.findall(s)}
        ids = {tuple(self.tokenizer(" " + w, add_special_tokens=False)["input_ids"])
               for w in words}
        return sorted(i[0] for i in ids if len(i) == 1)


def _item(enc: Encoder, clean: str, corrupted: str, answer: str, corrupted_answer: str,
          variant: str) -> TextItem:
    return TextItem(enc.prompt(clean), enc.prompt(corrupted), enc.word(answer),
                    enc.word(corrupted_answer), clean, corrupted, " " + answer,
                    " " + corrupted_answer, variant)


# ----------------------------------------------------------------------------- families


def ioi_item(rng: random.Random, enc: Encoder) -> TextItem:
    """A Wang et al. IOI sentence -> IO; corrupted (ABC): S2 replaced by a third name."""
    t = rng.randrange(len(IOI_TEMPLATES))
    order = rng.choice(("ABBA", "BABA"))
    io, s, third = rng.sample(NAMES, 3)
    a, b = (io, s) if order == "ABBA" else (s, io)
    fields = dict(A=a, B=b, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS))
    template = IOI_TEMPLATES[t]
    return _item(enc, template.format(S2=s, **fields), template.format(S2=third, **fields),
                 io, s, f"t{t}_{order}")


def induction_item(rng: random.Random, enc: Encoder, pool: Sequence[int]) -> TextItem:
    """``BOS s s[:k]`` -> ``s[k]``; corrupted: ``s[k]``'s first occurrence becomes a new word."""
    seq = rng.sample(pool, INDUCTION_LEN + 1)
    seq, new = seq[:-1], seq[-1]
    k = INDUCTION_K
    clean = (BOS_ID, *seq, *seq[:k])
    corrupted = (BOS_ID, *seq[:k], new, *seq[k + 1:], *seq[:k])
    decode = enc.tokenizer.decode
    return TextItem(clean, corrupted, seq[k], new, decode(clean[1:]), decode(corrupted[1:]),
                    decode([seq[k]]), decode([new]), f"len{INDUCTION_LEN}_k{k}")


RECALL_TEMPLATE = "The capital of {} is"


def recall_item(rng: random.Random, enc: Encoder) -> TextItem:
    """``The capital of X is`` -> capital(X); corrupted: another subject of X's kind."""
    facts = [(kind, fact) for kind, pairs in CAPITALS.items() for fact in pairs]
    kind, (subject, capital) = rng.choice(facts)
    other, other_capital = rng.choice([f for f in CAPITALS[kind] if f[0] != subject])
    return _item(enc, RECALL_TEMPLATE.format(subject), RECALL_TEMPLATE.format(other), capital,
                 other_capital, kind)


REASONING_PREFIX = "Three friends live in different cities."


def _bindings(names: Sequence[str], cities: Sequence[str]) -> str:
    return "".join(f" {n} lives in {c}." for n, c in zip(names, cities))


def reasoning_item(rng: random.Random, enc: Encoder) -> TextItem:
    """``NAME lives in CITY.`` bindings + ``NAME lives in`` -> that name's city.

    Corrupted: another bound name is queried (context unchanged), answer its city.
    """
    n = REASONING_BINDINGS
    names, cities = rng.sample(NAMES, n), rng.sample(CITIES, n)
    q, other = rng.sample(range(n), 2)
    context = REASONING_PREFIX + _bindings(names, cities)
    return _item(enc, f"{context} {names[q]} lives in", f"{context} {names[other]} lives in",
                 cities[q], cities[other], f"bind{n}_q{q}")


def make_text_items(name: str, n: int, seed: int, tokenizer: Any) -> list[TextItem]:
    """``n`` items of family ``name``, deterministic in ``seed``; all of one token length."""
    if name not in TEXT_TASKS:
        raise ValueError(f"unknown text task {name!r}; choose from {list(TEXT_TASKS)}")
    enc = Encoder(tokenizer)
    rng = random.Random(f"text-{name}-{seed}")
    if name == "induction":
        pool = enc.induction_pool()
        items = [induction_item(rng, enc, pool) for _ in range(n)]
    else:
        maker = {"ioi": ioi_item, "recall": recall_item, "reasoning": reasoning_item}[name]
        items = [maker(rng, enc) for _ in range(n)]
    lengths = sorted({len(it.clean) for it in items})
    if len(lengths) != 1:
        raise ValueError(f"{name} prompts tokenize to several lengths {lengths}: a word of the "
                         "lexicon is not one token under this tokenizer")
    return items


# ----------------------------------------------------------------------------- helpers


def name_ids(tokenizer: Any) -> set[int]:
    """Token ids of the IOI names (e.g. the candidates of ``analyses.causal.ioi.abc_pair``)."""
    enc = Encoder(tokenizer)
    return {enc.word(name) for name in NAMES}


def shortcut_baselines(clean_prompts: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """Top-1 accuracy of context-only shortcuts on ``reasoning`` prompts.

    ``last_city``: the last city bound in the context; ``first_city``: the first one. A task
    that these solve would measure recency or primacy, not retrieval by name.
    """
    picks: dict[str, list[bool]] = {"last_city": [], "first_city": []}
    for prompt, answer in zip(clean_prompts, answers, strict=True):
        cities = [" " + c for _, c in _BINDING.findall(prompt)]
        if not cities:
            raise ValueError(f"no 'NAME lives in CITY.' binding in {prompt!r}")
        picks["last_city"].append(cities[-1] == answer)
        picks["first_city"].append(cities[0] == answer)
    return {k: sum(v) / len(v) for k, v in picks.items()}
