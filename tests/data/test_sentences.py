"""Built-in sentences: enough, varied, well-formed, paraphrase groups intact."""

from __future__ import annotations

import pytest

from data.sentences import (
    builtin_sentences,
    load_prompts,
    paraphrase_groups,
    standalone_sentences,
)


def test_builtin_set_is_large_unique_and_well_formed():
    s = builtin_sentences()
    assert len(s) >= 256
    assert len(set(s)) == len(s)
    for sent in s:
        assert 5 <= len(sent.split()) <= 30, sent
        assert sent[0].isupper() and sent[-1] in ".?!", sent
    assert builtin_sentences() == s  # deterministic order


def test_paraphrase_groups_are_part_of_the_builtin_set():
    groups = paraphrase_groups()
    assert len(groups) >= 40
    assert all(2 <= len(g) <= 3 for g in groups)
    flat = [x for g in groups for x in g]
    assert builtin_sentences() == standalone_sentences() + flat
    assert len(set(flat)) == len(flat)


def test_load_prompts(tmp_path):
    assert load_prompts("builtin") == builtin_sentences()
    f = tmp_path / "p.txt"
    f.write_text("first prompt\n\n  second prompt  \n", encoding="utf-8")
    assert load_prompts(str(f)) == ["first prompt", "second prompt"]
    with pytest.raises(FileNotFoundError, match="one prompt per line"):
        load_prompts(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no non-empty"):
        load_prompts(str(tmp_path / "empty.txt"))
