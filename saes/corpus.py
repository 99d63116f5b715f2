"""Default token corpora for SAE training and evaluation, per model.

- `minilm` (encoders): the built-in English sentences (`data.sentences`), split
  deterministically into a train part and a held-out part (every 5th sentence).
- `organism`: fresh rows of the organism's own training distribution (all four task
  families, `data.organism.heldout`), drawn with seeds its training never used.
- `smollm2`: the built-in sentences (split as for minilm) plus text SmolLM2 sampled itself
  from 167 hand-written prompt stems in some twenty genres (`data/sentences/smollm2_samples.txt`,
  made by `scripts/make_smollm2_corpus.py`; no hub dataset is reachable). Whole stems are held
  out (stem i when i % 5 == 4), so held-out text never shares a prompt with training text.
  Prompts are sorted by length after the draw, so a batch pads little (short sentences and
  ~100-token samples would otherwise share batches).
- any other model: pass your own prompts (`prompts=`).

    tokens = corpus_tokens(loaded, n_tokens=100_000, seed=0)              # train split
    tokens = corpus_tokens(loaded, n_tokens=20_000, seed=1, split="heldout")
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import NamedTuple

import torch

from data.sentences import SENTENCE_DIR, builtin_sentences
from probes.models import LoadedModel
from probes.tokens import Tokens, tokenize

SPLITS = ("train", "heldout")
HELDOUT_EVERY = 5  # minilm: sentence i is held out when i % 5 == 4
SMOLLM2_SAMPLES = SENTENCE_DIR / "smollm2_samples.txt"
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _held(i: int) -> bool:
    """Item (sentence, or SmolLM2 prompt stem) i belongs to the held-out split."""
    return i % HELDOUT_EVERY == HELDOUT_EVERY - 1


def minilm_sentences(split: str) -> list[str]:
    """The built-in sentences of one split (fixed order)."""
    _check_split(split)
    held = split == "heldout"
    return [s for i, s in enumerate(builtin_sentences()) if _held(i) == held]


class Sample(NamedTuple):
    """One line of the SmolLM2 samples file: its prompt stem's index and its text."""

    stem: int
    text: str  # stem + continuation, newlines restored


def unescape_sample(line: str) -> str:
    """Undo the file's escapes: \\\\ \\n \\r \\t (scripts/make_smollm2_corpus.py writes them)."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), line)


def read_samples(path: Path = SMOLLM2_SAMPLES) -> list[Sample]:
    """The samples of `path` (``<stem index>\\t<escaped text>`` per line), in file order."""
    if not path.is_file():
        raise FileNotFoundError(f"SmolLM2 sample text {path} is missing; it ships with attnlab "
                                "(data/sentences), or rebuild it: scripts/make_smollm2_corpus.py")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stem, sep, text = line.partition("\t")
        if not line.strip():
            continue
        if not sep or not stem.isdigit() or not text.strip():
            raise ValueError(f"{path}:{n}: expected '<stem index>\\t<text>', got {line[:60]!r}")
        out.append(Sample(int(stem), unescape_sample(text)))
    return out


def smollm2_texts(split: str) -> list[str]:
    """SmolLM2's corpus of one split (fixed order): built-in sentences, then samples."""
    _check_split(split)
    held = split == "heldout"
    samples = [s.text for s in read_samples() if _held(s.stem) == held]
    return minilm_sentences(split) + samples


def organism_tokens(split: str, seed: int = 0, *, n_rows: int | None = None,
                    n_tokens: int | None = None) -> Tokens:
    """Held-out rows of the organism's training mix (`data.organism.heldout`), as Tokens.

    Splits "train"/"heldout" (SAE corpora, `n_tokens`) and "calibration"/"eval" (the
    redundancy study, `n_rows`) come from seeds the organism's training never used.
    """
    from data.organism.heldout import heldout_rows, training_setup

    batch = heldout_rows(split, seed, n_rows=n_rows, n_tokens=n_tokens)
    mask = batch.mask.long()  # (batch, pos)
    vocab = training_setup().world.vocab
    str_tokens = [[vocab[i] for i in row[: int(n)]] for row, n in
                  zip(batch.tokens.tolist(), mask.sum(1).tolist())]
    return Tokens(batch.tokens, mask, mask.sum(1), str_tokens)


def corpus_tokens(
    loaded: LoadedModel, n_tokens: int, seed: int = 0, max_len: int | None = None,
    split: str = "train", prompts: list[str] | None = None,
) -> Tokens:
    """Tokenised prompts with about `n_tokens` real tokens (fewer if the corpus is smaller)."""
    if prompts is None:
        if loaded.name == "minilm" or loaded.kind == "encoder":
            prompts = minilm_sentences(split)
            random.Random(seed).shuffle(prompts)
        elif loaded.name == "organism":
            _check_split(split)
            return _trim(organism_tokens(split, seed, n_tokens=n_tokens), n_tokens)
        elif loaded.name == "smollm2":
            prompts = smollm2_texts(split)
            random.Random(seed).shuffle(prompts)
            return _by_length(_trim(tokenize(loaded, prompts, max_len=max_len), n_tokens))
        else:
            raise ValueError(
                f"no default corpus for model {loaded.name!r}: pass prompts (a list of "
                "strings, e.g. from data.sentences.load_prompts(path))"
            )
    return _trim(tokenize(loaded, prompts, max_len=max_len), n_tokens)


def _by_length(tokens: Tokens) -> Tokens:
    """`tokens` reordered by length (stable), so consecutive batches pad little."""
    order = sorted(range(len(tokens.str_tokens)), key=lambda i: int(tokens.lengths[i]))
    idx = torch.tensor(order, dtype=torch.long)
    return Tokens(tokens.ids[idx], tokens.attention_mask[idx], tokens.lengths[idx],
                  [tokens.str_tokens[i] for i in order])


def _trim(tokens: Tokens, n_tokens: int) -> Tokens:
    """The first prompts of `tokens` holding about `n_tokens` real tokens."""
    keep = min(int((tokens.lengths.cumsum(0) < n_tokens).sum()) + 1, tokens.ids.shape[0])
    return Tokens(tokens.ids[:keep], tokens.attention_mask[:keep], tokens.lengths[:keep],
                  tokens.str_tokens[:keep])
