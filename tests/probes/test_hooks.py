"""Scoped hooks: record and replace are exact, names are checked first, only own handles go."""

from __future__ import annotations

import pytest
import torch

from probes.hooks import UnknownHookError, hook_count, record, scoped_hooks
from tests.support.tiny import tiny_decoder

Z1 = "blocks.1.attn.hook_z"
RESID = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def loaded():
    return tiny_decoder()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(1, 50, (3, 6), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_only_own_handles_are_removed_when_the_body_raises(loaded, exc):
    model = loaded.model
    foreign_tl = model.hook_dict[Z1]  # a TransformerLens hook of somebody else
    foreign_tl.add_hook(lambda t, hook: None)
    foreign_torch = model.hook_dict[RESID].register_forward_hook(lambda m, i, o: None)
    try:
        with pytest.raises(exc):
            with scoped_hooks(loaded, {Z1: lambda z: None, RESID: lambda r: None}):
                assert hook_count(model) == 4
                raise exc("boom")
        assert hook_count(model) == 2
        assert len(foreign_tl.fwd_hooks) == 1  # the other users' hooks are untouched
        assert len(model.hook_dict[RESID]._forward_hooks) == 1
    finally:
        foreign_torch.remove()
        model.reset_hooks(including_permanent=True)
    assert hook_count(model) == 0


def test_unknown_names_raise_before_anything_is_registered(loaded):
    with pytest.raises(UnknownHookError, match=r"did you mean .*blocks\.1\.attn\.hook_z"):
        with scoped_hooks(loaded.model, [(RESID, lambda r: None),
                                         ("blocks.1.attn.hook_zz", lambda z: None)]):
            pytest.fail("the body must not run")
    assert hook_count(loaded.model) == 0
    with pytest.raises(UnknownHookError):
        record(loaded.model, ["hook_nothing"], lambda: pytest.fail("run must not run"))
    assert hook_count(loaded.model) == 0


def test_record_equals_run_with_cache(loaded, tokens):
    model = loaded.model
    with torch.no_grad():
        out, acts = record(loaded, [Z1, RESID], lambda: model(tokens))
        want_out, cache = model.run_with_cache(tokens, names_filter=[Z1, RESID])
    torch.testing.assert_close(out, want_out)
    assert set(acts) == {Z1, RESID}
    for name in (Z1, RESID):
        torch.testing.assert_close(acts[name], cache[name])
    assert hook_count(model) == 0


def test_replace_equals_run_with_hooks(loaded, tokens):
    model = loaded.model

    def zero_head_2(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[:, :, 2] = 0
        return z

    with torch.no_grad():
        with scoped_hooks(model, {Z1: zero_head_2}):
            ours = model(tokens)
        want = model.run_with_hooks(tokens, fwd_hooks=[(Z1, lambda z, hook: zero_head_2(z))])
        clean = model(tokens)
    torch.testing.assert_close(ours, want)
    assert not torch.allclose(ours, clean)
    assert hook_count(model) == 0


def test_record_sees_replacements_and_hooks_run_in_order(loaded, tokens):
    model = loaded.model
    with torch.no_grad():
        _, acts = record(model, [Z1], lambda: model(tokens),
                         hooks=[(Z1, lambda z: z + 1.0), (Z1, lambda z: z * 2.0)])
        _, clean = record(model, [Z1], lambda: model(tokens))
    torch.testing.assert_close(acts[Z1], (clean[Z1] + 1.0) * 2.0)


def test_record_keeps_the_graph(loaded, tokens):
    model = loaded.model
    with torch.enable_grad():
        out, acts = record(model, [RESID], lambda: model(tokens))
        (grad,) = torch.autograd.grad(out[:, -1, 3].sum(), [acts[RESID]])
    assert grad.shape == acts[RESID].shape and grad.abs().sum() > 0


def test_transformer_lens_reset_hooks_leaves_scoped_hooks_alone(loaded, tokens):
    """run_with_hooks resets TransformerLens' own hooks at its end; ours stay attached."""
    model = loaded.model
    with torch.no_grad(), scoped_hooks(model, {Z1: torch.zeros_like}):
        model.run_with_hooks(tokens, fwd_hooks=[(RESID, lambda r, hook: None)])
        assert hook_count(model) == 1
    assert hook_count(model) == 0
