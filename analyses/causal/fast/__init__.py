"""Fast exact patching for causal decoders: recompute only what a patch can change.

``transformer_lens.patching`` runs a whole forward pass per patch, and the hook engine of
:mod:`analyses.causal.batched` still runs every position of every layer from the patched
layer on. For a causal decoder most of that is provably unchanged by the patch:

1. layers before the patched one are unchanged (the pass starts at the patched layer);
2. positions before ``p0``, the first position where clean and corrupted prompts differ, are
   identical in both runs, so every patched run equals the baseline there: only positions
   ``>= p0`` are recomputed, attending to the prefix keys and values of the baseline run;
3. a patch of ``z``, ``q``, ``k``, ``v``, ``attn_out``, ``mlp_out`` or a residual enters the
   residual stream at or after its sublayer, so the pass starts there (``z`` goes through
   ``W_O`` only; ``q``/``k``/``v`` recompute that one attention), not at the start of the block;
4. when the metric reads one position per prompt (``PatchPair.score_pos``), the last block
   computes queries, MLP and unembedding at that position only.

Architectures (:func:`unsupported_reason` lists what is not): GPT-2-style decoders (LayerNorm
or LNPre, GELU/ReLU MLPs, learned positions) and Llama-style ones (RMSNorm, gated SiLU MLPs,
grouped-query attention, rotary positions exactly as TransformerLens 3.9 applies them, with
its tables of at most ``n_ctx`` rows: longer prompts raise a ValueError). Under GQA a ``z`` or
``q`` patch is per query head and a ``k`` or ``v`` patch per key/value head (it changes every
query head of its group), as the hook points ``hook_k``/``hook_v`` hold them.

The blocks run on TransformerLens' own weights and rotary tables as fused plain tensor code
(:class:`DecoderMath`, :mod:`.blocks`); tests check the results against
``transformer_lens.patching`` to 1e-4, on tiny random models of every variant and on SmolLM2.
TransformerLens has no such partial forward pass (its ``start_at_layer`` covers fact 1 only),
hence this package: it is the project's one transformer forward besides TransformerLens'
(layer dropping runs TransformerLens' own blocks; the organism's training twin,
:mod:`data.organism.net`, is kept for a measured reason given there). Models outside the
supported architectures, and models with hooks attached (the fast pass would silently skip
them), use the hook engine instead.

Memory: a sweep is chunked to ``PatchingConfig.memory_budget_mb`` (256 MB) of rows per pass
(:func:`analyses.causal.batched.rows_per_pass`; with ``score_pos`` the logits count for one
position per row), so the peak does not grow with the number of patches. Measured with
``torch.profiler`` (``benchmarks/patching.py``, peak of torch's CPU allocations during the
sweep): 13.1 MiB for the organism's IOI z sweep on 32 pairs; 347 MiB for SmolLM2's (Q4_1,
dequantised to fp32; 270 heads, 4 pairs x 16 tokens), against 658 MiB for one
TransformerLens ``run_with_cache`` of the same prompts. Speed on that SmolLM2 sweep, side by
side with ``transformer_lens.patching`` (1 CPU thread): 14.6 s vs 287.6 s, 19.6x, with 7.2x
fewer FLOPs (649.6 vs 4,684 GFLOP); results equal to 5.3e-6 (README, benchmark paragraph).
"""

from analyses.causal.fast.arch import (
    ACTIVATIONS,
    FAST_COMPONENTS,
    component_heads,
    kv_heads,
    unsupported_reason,
)
from analyses.causal.fast.blocks import DecoderMath, LayerWeights, Norm, Rotary, causal_mask
from analyses.causal.fast.engine import (
    Entry,
    FastDecoder,
    baseline_names,
    fast_patched_metrics,
    first_difference,
    key_name,
)

__all__ = [
    "ACTIVATIONS", "FAST_COMPONENTS", "DecoderMath", "Entry", "FastDecoder", "LayerWeights",
    "Norm", "Rotary", "baseline_names", "causal_mask", "component_heads", "fast_patched_metrics",
    "first_difference", "key_name", "kv_heads", "unsupported_reason",
]
