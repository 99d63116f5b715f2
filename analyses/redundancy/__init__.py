"""Redundancy (He et al. 2024): similarity scores, layer dropping, evaluation of dropped
models and the whole study that ties them together."""
