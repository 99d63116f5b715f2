"""Causal interventions on what the probes only observe: massive activations and attention sinks.

- :mod:`analyses.interventions.massive`: where a model's massive activations live (the probe's
  emergence layer, dims and reference means) and the zero / mean / random-control patch of the
  residual stream there (Sun et al. 2024);
- :mod:`analyses.interventions.sinks`: each head's attention to position 0 split into
  |q| |k0| cos(theta) against the other keys, the sink's value contribution |v0 W_O|, and the
  removal of the attention to position 0 (the rest renormalised);
- :mod:`analyses.interventions.evaluate`: what a patched model does on held-out text (LM loss,
  task accuracy, sink rate per layer; an encoder's embedding fidelity instead);
- :mod:`analyses.interventions.study`: both studies as tidy tables.
"""
