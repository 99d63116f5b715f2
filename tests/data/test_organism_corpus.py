"""The organism's world, corpus, held-out split, shortcut baselines and tokenizer."""

from __future__ import annotations

import random

import pytest
import torch

from data.organism.baselines import baseline_accuracies
from data.organism.corpus import FAMILIES, is_heldout, make_items, training_row
from data.organism.model import make_batch
from data.organism.vocab import UnknownWordError, build_tokenizer, encode_words
from data.organism.world import make_world

WORLD = make_world(0, 300)


def test_vocabulary_is_word_level_and_small():
    vocab = WORLD.vocab
    assert len(vocab) <= 1024
    assert vocab[:3] == ("<pad>", "<bos>", "<unk>")
    assert {".", ","} <= set(vocab)
    assert len(set(WORLD.names)) == 300  # hundreds of people to memorise


def test_world_facts_are_seeded():
    assert make_world(0).city == WORLD.city
    assert make_world(1).city != WORLD.city
    assert make_world(1).vocab == WORLD.vocab  # the lexicon does not depend on the seed


@pytest.mark.parametrize("family", FAMILIES)
def test_items_deterministic_equal_length_and_distinct_answers(family):
    a, b = make_items(family, 50, 3, WORLD), make_items(family, 50, 3, WORLD)
    assert a == b
    assert make_items(family, 50, 4, WORLD) != a
    assert len({len(it.prompt) for it in a}) == 1  # one length per family
    for it in a:
        assert len(it.prompt) == len(it.corrupted_prompt)
        assert sum(x != y for x, y in zip(it.prompt, it.corrupted_prompt)) == 1
        assert it.answer != it.corrupted_answer
        assert len(it.prompt) + 1 < 64  # well under n_ctx


def test_training_batches_are_deterministic_per_step():
    mix = {f: 1.0 for f in FAMILIES}
    a = make_batch(7, 0, WORLD, mix, 16, 64)
    assert torch.equal(a.tokens, make_batch(7, 0, WORLD, mix, 16, 64).tokens)
    assert not torch.equal(a.tokens[:, :5], make_batch(8, 0, WORLD, mix, 16, 64).tokens[:, :5])
    assert a.tokens.shape[1] <= 64 and bool((a.tokens[:, 0] == 1).all())


def _training_text(n_rows: int) -> list[str]:
    rng = random.Random("test-corpus")
    return [" ".join(training_row(rng, WORLD, f, 63)) for f in FAMILIES for _ in range(n_rows)]


@pytest.mark.parametrize("family", ["induction", "ioi", "reasoning"])
def test_heldout_items_never_in_training_text(family):
    items = make_items(family, 200, 0, WORLD)
    tag = family
    assert all(is_heldout(_key(it), tag) for it in items)
    text = _training_text(300)
    for it in items:
        target = " ".join(it.prompt + (it.answer,))
        assert all(target not in row for row in text)


def _key(it):
    """The identity the held-out split hashes (mirrors corpus.py)."""
    if it.family == "induction":
        return list(it.prompt[:12])
    if it.family == "reasoning":
        return list(it.prompt[:-4])
    words = it.prompt
    t, order = int(it.variant[1]), it.variant.split("_")[1]
    first, second, place, s, obj = words[1], words[3], words[7], words[9], words[12]
    io = first if order == "ABBA" else second
    return [str(t), order, io, s, place, obj]


def test_reasoning_shortcuts_stay_near_chance():
    """3 chains: picking any in-context city is right 1/3 of the time; memory ~1/30."""
    items = make_items("reasoning", 600, 1, WORLD)
    acc = baseline_accuracies(items, WORLD)
    assert acc["first_city"] < 0.42 and acc["last_city"] < 0.42
    assert acc["memorised_city"] < 0.1
    for it in items[:50]:  # several candidates of the answer's type in every context
        assert sum(w in WORLD.cities for w in it.prompt) == 3


def test_ioi_and_recall_shortcuts_stay_near_chance():
    ioi = baseline_accuracies(make_items("ioi", 600, 1, WORLD), WORLD)
    assert 0.4 < ioi["first_name"] < 0.6 and ioi["last_name"] == 0.0  # ABBA/BABA balanced
    recall = baseline_accuracies(make_items("recall", 600, 1, WORLD), WORLD)
    assert recall["most_common_value"] < 0.15


def test_tokenizer_roundtrip_and_strict_unknown_words():
    tok = build_tokenizer(WORLD.vocab)
    w2i = {w: i for i, w in enumerate(WORLD.vocab)}
    text = "when Balo and Bame went to the park , Bame gave a key to"
    ids = tok(text)["input_ids"]
    assert ids[0] == w2i["<bos>"] and ids == encode_words(text, w2i)
    assert tok.decode(ids[1:]) == text
    assert tok("Zorglub")["input_ids"] == [w2i["<bos>"], w2i["<unk>"]]  # general path: <unk>
    with pytest.raises(UnknownWordError, match="Zorglub"):
        encode_words("when Zorglub and", w2i)  # strict task path: a clear error
