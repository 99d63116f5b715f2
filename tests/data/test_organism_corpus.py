"""The organism's world, corpus, held-out split, shortcut baselines and tokenizer."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch

from data.organism.baselines import baseline_accuracies
from data.organism.config import V1, ModelConfig, TrainConfig
from data.organism.corpus import (
    FAMILIES,
    is_heldout,
    lookup_text,
    make_items,
    reasoning_text,
    training_row,
)
from data.organism.model import make_batch
from data.organism.vocab import UnknownWordError, build_tokenizer, encode_words
from data.organism.world import make_world

WORLD = make_world(0, 300)
N_CTX = ModelConfig().n_ctx


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
    a = make_batch(7, 0, WORLD, mix, 16, N_CTX)
    assert torch.equal(a.tokens, make_batch(7, 0, WORLD, mix, 16, N_CTX).tokens)
    assert not torch.equal(a.tokens[:, :5], make_batch(8, 0, WORLD, mix, 16, N_CTX).tokens[:, :5])
    assert a.tokens.shape[1] <= N_CTX and bool((a.tokens[:, 0] == 1).all())


def _training_text(n_rows: int) -> list[str]:
    rng = random.Random("test-corpus")
    rows = [" ".join(training_row(rng, WORLD, f, N_CTX - 1))
            for f in FAMILIES for _ in range(n_rows)]
    return rows + [" ".join(training_row(rng, WORLD, f, 95, "dense"))
                   for f in ("reasoning", "lookup") for _ in range(n_rows)]


@pytest.mark.parametrize("family", ["induction", "ioi", "reasoning"])
def test_heldout_items_never_in_training_text(family):
    items = make_items(family, 200, 0, WORLD)
    tag = family
    assert all(is_heldout(_key(it), tag) for it in items)
    text = _training_text(300)
    for it in items:
        target = " ".join(it.prompt + (it.answer,))
        assert all(target not in row for row in text)


def _facts_and_queries(words: list[str]):
    """(subject -> location) facts and (subject, answer) queries of one reasoning text."""
    facts, queries, i = {}, [], 0
    while i < len(words):
        if words[i] == "so":
            queries.append((words[i + 1], words[i + 4]))
            i += 6
        else:
            facts[words[i]] = words[i + 3]
            i += 5
    return facts, queries


def test_reasoning_text_queries_every_subject_and_answers_with_its_chain_end():
    """Every person and every place with a city is asked once; the answer follows the facts
    to the end of the chain (a city, or the place when the chain is cut after one link)."""
    rng = random.Random("reasoning-text")
    cut = two_hop = 0
    for _ in range(400):
        facts, queries = _facts_and_queries(reasoning_text(rng, WORLD))
        asked = [s for s, _ in queries]
        assert sorted(asked) == sorted(set(asked)) == sorted(facts)
        for subject, answer in queries:
            end = facts[subject]
            while end in facts:
                end = facts[end]
            assert answer == end
            if subject in WORLD.names:
                two_hop += answer in WORLD.cities
                cut += answer in WORLD.places
    assert two_hop > 300 and cut > 200  # both kinds of person query are common


def test_lookup_rows_ask_only_one_hop_questions():
    rng = random.Random("lookup-text")
    asked_people = 0
    for _ in range(300):
        facts, queries = _facts_and_queries(lookup_text(rng, WORLD))
        for subject, answer in queries:
            assert facts[subject] == answer  # read from one fact
            asked_people += subject in WORLD.names
    assert asked_people > 100


def test_batches_without_lookup_rows_draw_the_rows_they_drew_before_lookup_existed():
    """make_batch draws row families over FAMILIES + ("lookup",): with no lookup weight the
    draws equal those over FAMILIES alone (the streams of shipped runs stay fixed)."""
    mix = {"induction": 0.3, "ioi": 0.15, "recall": 0.15, "reasoning": 0.4}
    for step in range(5):
        rng = random.Random(f"batch-0-{step}")
        expected = rng.choices(FAMILIES, weights=[mix[f] for f in FAMILIES], k=32)
        rows = make_batch(step, 0, WORLD, mix, 32, N_CTX).tokens
        starts = [WORLD.vocab[int(t)] for t in rows[:, 1]]
        for family, first in zip(expected, starts):
            if family == "ioi":
                assert first in ("when", "after", "while", "then", "once")
            elif family == "reasoning":
                assert first in WORLD.names or first in WORLD.places


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


def test_v1_reasoning_rows_are_those_of_the_first_organism():
    """Rows of the first organism's recipe are drawn exactly as before the dense rows existed
    (the stream its SAE corpora and redundancy rows were cut from)."""
    rng = random.Random("v1")
    row = training_row(rng, WORLD, "reasoning", 63, reasoning_rows="v1")
    facts, queries = _facts_and_queries(row)
    assert 1 <= len(queries) <= 3 and queries[-1][0] in WORLD.places
    assert all(answer in WORLD.cities for _, answer in queries)
    with pytest.raises(ValueError, match="reasoning_rows"):
        training_row(rng, WORLD, "reasoning", 63, reasoning_rows="sparse")


# sha256 of the first organism's training batches -3..7 (its loss, calibration and eval rows,
# then training steps), computed with the code that trained it (commit d961d3c)
V1_BATCHES_SHA256 = "5198f199bbeb5092be07a3e83f046b6da542bc29e91e15c12dc6a75fabc2e376"


def test_v1_batches_are_bit_identical_to_those_the_first_organism_trained_on():
    mix = {"induction": 0.3, "ioi": 0.15, "recall": 0.15, "reasoning": 0.4}
    digest = hashlib.sha256()
    for step in range(-3, 8):
        digest.update(make_batch(step, 0, WORLD, mix, 32, 64, "v1").tokens.numpy().tobytes())
    assert digest.hexdigest() == V1_BATCHES_SHA256


def test_the_curriculum_moves_the_reasoning_weight_to_lookup_rows_in_between():
    tc = TrainConfig()
    assert tc.mix_at(0) == {f: float(f == "induction") for f in FAMILIES}
    mid = tc.mix_at(tc.curriculum_steps)
    assert mid["lookup"] == tc.mix["reasoning"] > 0 and mid["reasoning"] == 0
    assert tc.mix_at(tc.lookup_steps - 1) == mid and tc.mix_at(tc.lookup_steps) == tc.mix
    v1 = V1[1]
    assert v1.mix_at(v1.curriculum_steps) == v1.mix
    with pytest.raises(ValueError, match="lookup_steps"):
        TrainConfig(lookup_steps=tc.curriculum_steps - 1)


@pytest.mark.parametrize("rows", ["v1", "dense"])
def test_longest_row_is_the_bound_of_every_reasoning_row(rows):
    from data.organism.corpus import LONGEST_ROW

    rng = random.Random(f"longest-{rows}")
    lengths = [len(training_row(rng, WORLD, "reasoning", 200, rows)) for _ in range(4000)]
    assert max(lengths) == LONGEST_ROW[rows]
