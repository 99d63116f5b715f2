"""The organism: a small causal LM trained by attnlab on a generated corpus whose mechanisms
are known (induction, IOI, memorised recall, in-context two-hop reasoning).

- :mod:`data.organism.world`    lexicon and world facts (seeded)
- :mod:`data.organism.corpus`   training text and held-out evaluation items per task family
- :mod:`data.organism.vocab`    word-level tokenizer (HF fast tokenizer, TransformerLens-ready)
- :mod:`data.organism.train`    the trainer behind ``attnlab organism train`` (resumable, seeded)
- :mod:`data.organism.load`     ``load_organism()``: the shipped checkpoint as a HookedTransformer
"""
