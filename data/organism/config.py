"""Configs of the organism: its architecture and its training run, with named presets.

``default`` is the shipped organism; ``two-hop`` is issue 20's recipe for two-hop reasoning
(not reached: see the organism README); ``tiny`` is a seconds-long config for tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from data.organism.corpus import FAMILIES, REASONING_ROWS


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the HookedTransformer (LayerNorm, GELU, rotary positions by default)."""

    n_layers: int = 4  # transformer blocks
    d_model: int = 64  # residual width
    n_heads: int = 4  # heads per layer; d_head = d_model // n_heads
    d_mlp: int = 256  # MLP hidden width
    n_ctx: int = 64  # context length (every prompt and training row fits)
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

    steps: int = 8000  # optimizer steps (the LR schedule spans exactly these)
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
        default_factory=lambda: {"induction": 0.3, "ioi": 0.15, "recall": 0.15, "reasoning": 0.4}
    )
    # the first curriculum_steps steps train on induction rows only: induction heads form
    # there within ~1.5k steps, while in the full mix they stayed on a plateau (IOI and recall
    # rows are solvable without them) for more than 4k steps
    curriculum_steps: int = 1500
    # then, until lookup_steps (0: no such phase), the reasoning rows ask one-hop questions
    # only ("lookup" rows, data.organism.corpus.lookup_text): the person -> place lookup forms
    # there, while with two-hop questions from the start it stayed at chance (issue 20)
    lookup_steps: int = 0
    reasoning_rows: str = "v1"  # how reasoning rows are written (corpus.REASONING_ROWS)
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


#: Issue 20's recipe for two-hop reasoning: deeper, longer rows with a question on every
#: subject, and a one-hop ("lookup") phase after the induction curriculum. Measured: both
#: single hops are learned, the two-hop composition is not (organism README).
TWO_HOP = (
    ModelConfig(n_layers=6, n_ctx=96),
    TrainConfig(steps=10000, mix={"induction": 0.2, "ioi": 0.1, "recall": 0.15, "reasoning": 0.55},
                curriculum_steps=1000, lookup_steps=3000, reasoning_rows="dense"),
)

PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "default": (ModelConfig(), TrainConfig()),  # the shipped organism
    "two-hop": TWO_HOP,
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
