"""Patching test cases: TransformerLens' own patching function for each granularity."""

import transformer_lens.patching as tlp

from tests.support.tiny import tiny_cfg

TOL = 1e-4  # max |ours - transformer_lens.patching|

CASES = [
    ("resid_pre", True, tlp.get_act_patch_resid_pre),
    ("resid_mid", True, tlp.get_act_patch_resid_mid),
    ("attn_out", True, tlp.get_act_patch_attn_out),
    ("mlp_out", True, tlp.get_act_patch_mlp_out),
    ("z", False, tlp.get_act_patch_attn_head_out_all_pos),
    ("z", True, tlp.get_act_patch_attn_head_out_by_pos),
    ("q", False, tlp.get_act_patch_attn_head_q_all_pos),
    ("k", False, tlp.get_act_patch_attn_head_k_all_pos),
    ("v", False, tlp.get_act_patch_attn_head_v_all_pos),
    ("q", True, tlp.get_act_patch_attn_head_q_by_pos),
    ("pattern", False, tlp.get_act_patch_attn_head_pattern_all_pos),
    ("pattern", True, tlp.get_act_patch_attn_head_pattern_by_pos),
]


def patch_cfg(**overrides):
    """The patching tests' tiny config: :func:`tiny_cfg` with larger initial weights (0.1)."""
    return tiny_cfg(**{"initializer_range": 0.1, **overrides})
