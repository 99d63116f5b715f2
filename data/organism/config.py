"""Configs of the organism: its architecture and its training run, with named presets.

``default`` is the shipped organism (issue 20's recipe: it does two-hop reasoning); ``v1`` is
the first organism (4 layers, no two-hop reasoning); ``tiny`` is a seconds-long config for
tests. The dataclass defaults are the shipped organism's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from data.organism.corpus import FAMILIES, REASONING_ROWS


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the HookedTransformer (LayerNorm, GELU, rotary positions by default)."""

    n_layers: int = 6  # transformer blocks (4 did not compose two lookups: issue 20)
    d_model: int = 64  # residual width
    n_heads: int = 4  # heads per layer; d_head = d_model // n_heads
    d_mlp: int = 256  # MLP hidden width
    n_ctx: int = 96  # context length (every prompt and training row fits)
    positional: str = "rotary"  # rotary (GPT-NeoX style) | learned absolute embeddings
    init_std: float | None = None  # std of weight matrices; None: 0.8/sqrt(d_model) like TL

    @property
    def weight_std(self) -> float:
        return self.init_std if self.init_std is not None else 0.8 / self.d_model**0.5

    def __post_init__(self) -> None:
        if self.positional not in ("learned", "rotary"):
            raise ValueError(f"positional must be 'learned' or 'rotary', got {self.positional!r}")
        if min(self.n_layers, self.d_model, self.n_heads, self.d_mlp) < 1:
            raise ValueError(f"model sizes must be positive: {self}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by n_heads {self.n_heads}")
        if self.n_ctx < 50:
            raise ValueError(f"n_ctx must be >= 50 (longest evaluation prompt), got {self.n_ctx}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run; everything that changes the weights is here (plus the world)."""

    steps: int = 10000  # optimizer steps (the LR schedule spans exactly these)
    batch_size: int = 32  # training rows per step
    lr: float = 2e-3  # peak AdamW learning rate
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup: int = 200  # linear warm-up steps, then cosine decay to lr_min_frac * lr
    lr_min_frac: float = 0.05  # final LR as a fraction of the peak
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0  # seeds the initial weights and every batch (batch t uses (seed, t))
    world_seed: int = 0  # seeds the world's facts
    n_people: int = 300  # people in the world
    mix: dict[str, float] = field(  # sampling weight of each task family's training rows
        default_factory=lambda: {"induction": 0.2, "ioi": 0.1, "recall": 0.15, "reasoning": 0.55}
    )
    # the first curriculum_steps steps train on induction rows only: induction heads form
    # there within ~1.5k steps, while in the full mix they stayed on a plateau (IOI and recall
    # rows are solvable without them) for more than 4k steps
    curriculum_steps: int = 1000
    # then, until lookup_steps (0: no such phase), the reasoning rows ask one-hop questions
    # only ("lookup" rows, data.organism.corpus.lookup_text): the person -> place lookup forms
    # there, while with two-hop questions from the start it stayed at chance (issue 20)
    lookup_steps: int = 3000
    reasoning_rows: str = "dense"  # how reasoning rows are written (corpus.REASONING_ROWS)
    eval_every: int = 200  # steps between progress-bar accuracy updates
    n_eval: int = 64  # evaluation items per family for progress and dynamics
    n_checkpoints: int = 16  # log-spaced intermediate checkpoints (plus step 0 and the last)
    save_every: int = 100  # steps between resumable "last" checkpoints

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"steps, batch_size and lr must be positive: {self}")
        if self.reasoning_rows not in REASONING_ROWS:
            raise ValueError(f"reasoning_rows must be one of {sorted(REASONING_ROWS)}, got "
                             f"{self.reasoning_rows!r}")
        if set(self.mix) != set(FAMILIES) or min(self.mix.values()) < 0:
            raise ValueError(f"mix needs a non-negative weight for each of {FAMILIES}")
        if not 0 <= self.curriculum_steps < self.steps:
            raise ValueError(f"curriculum_steps must be in [0, steps), got {self.curriculum_steps}")
        if self.lookup_steps and not self.curriculum_steps <= self.lookup_steps < self.steps:
            raise ValueError(f"lookup_steps must be 0 or in [curriculum_steps, steps), got "
                             f"{self.lookup_steps}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup must be in [0, steps), got {self.warmup}")

    def mix_at(self, step: int) -> dict[str, float]:
        """The row weights of training batch ``step``: induction only, then ``mix`` with the
        reasoning weight on one-hop ``lookup`` rows, then ``mix``."""
        if step < self.curriculum_steps:
            return {f: float(f == "induction") for f in FAMILIES}
        if step < self.lookup_steps:
            return {**self.mix, "reasoning": 0.0, "lookup": self.mix["reasoning"]}
        return self.mix

    def to_dict(self) -> dict:
        return asdict(self)


#: The first organism (shipped until issue 20): 4 layers, one or two questions per reasoning
#: context; it learned induction, IOI and recall but neither in-context lookup.
V1 = (
    ModelConfig(n_layers=4, n_ctx=64),
    TrainConfig(steps=8000, mix={"induction": 0.3, "ioi": 0.15, "recall": 0.15, "reasoning": 0.4},
                curriculum_steps=1500, lookup_steps=0, reasoning_rows="v1"),
)

PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "default": (ModelConfig(), TrainConfig()),  # the shipped organism
    "v1": V1,
    "tiny": (
        ModelConfig(n_layers=2, d_model=32, n_heads=4, d_mlp=64, n_ctx=96),
        TrainConfig(steps=20, batch_size=8, warmup=2, n_people=20, eval_every=10, n_eval=8,
                    n_checkpoints=4, save_every=5, curriculum_steps=5, lookup_steps=10,
                    reasoning_rows="dense"),
    ),
}


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    """The (model, training) configs of preset ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown organism config {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]
