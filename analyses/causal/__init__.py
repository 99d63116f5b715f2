"""Causal analyses: activation patching (exact, batched, fast, attribution, path), ablations,
selective impairment, head importance and the IOI/circuit study."""
