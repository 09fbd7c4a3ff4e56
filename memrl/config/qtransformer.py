"""The ``qtransformer`` section (offline Q-Transformer) and the ``data`` section (its dataset).

The memory core (``core``, ``core_kwargs``) and the encoder settings come from the ``model``
section, not from here. Defaults: Chebotar et al. (2023) and the reference implementation
(256 bins, gamma 0.98, conservative weight 1, R_min 0, EMA 0.99).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from memrl.config.section import Section


class QTransformerHyperparameters(Section):
    """Everything the Q-Transformer learner needs besides the network's core and encoder."""

    model_config = ConfigDict(frozen=True)
    label = "qtransformer"

    bins: int = Field(256, ge=2, description="Bins per action dimension (a Box's B).")
    gamma: float = Field(0.98, gt=0.0, le=1.0, description="Discount factor.")
    conservative_weight: float = Field(
        1.0, ge=0.0, description="alpha: weight of the push of unseen bins towards r_min."
    )
    r_min: float = Field(0.0, description="Value the unseen bins are regularised towards.")
    value_scale: float = Field(
        1.0,
        gt=0.0,
        description=(
            "Q in units of this: the heads' outputs are multiplied by it and the loss's errors "
            "divided by it, so returns of hundreds train as fast as returns near 1 (set it near "
            "the largest |return|, e.g. |r_min|)."
        ),
    )
    mc_lower_bound: bool = Field(
        True, description="Raise targets to the Monte-Carlo return on terminated episodes."
    )
    target_ema: float = Field(
        0.99,
        ge=0.0,
        lt=1.0,
        description="Polyak/EMA decay beta: theta' <- beta theta' + (1-beta) theta.",
    )
    lr: float = Field(3e-4, gt=0.0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    grad_clip: float = Field(10.0, gt=0.0, description="Max global gradient norm.")
    batch_size: int = Field(32, ge=1, description="Sequences per update.")
    seq_len: int = Field(20, ge=1, description="Training steps T per sequence.")
    burn_in: int = Field(
        10, ge=0, description="Steps before the training steps that only warm up the core."
    )
    n_step: int = Field(1, ge=1, description="n of the n-step target on the last dimension.")
    dueling: bool = Field(False, description="Dueling value/advantage split per dimension.")
    bin_embedding_dim: int = Field(32, ge=1, description="Size of a chosen bin's embedding.")
    head_hiddens: tuple[int, ...] = Field(
        (128,), description="MLP sizes of each dimension's Q head."
    )
    updates_per_iteration: int = Field(
        100, ge=1, description="Learner updates per training iteration (memrl train)."
    )
    eval_every: int = Field(
        0, ge=0, description="Play the greedy policy every K iterations (0 = never)."
    )
    eval_episodes: int = Field(5, ge=1, description="Episodes of each greedy evaluation.")

    @model_validator(mode="after")
    def _check_sizes(self) -> QTransformerHyperparameters:
        if any(h <= 0 for h in self.head_hiddens):
            raise ValueError(f"head_hiddens must be positive ints, got {self.head_hiddens}")
        return self


class DataSection(Section):
    """The ``data`` section: the offline dataset an offline algorithm (qtransformer) reads."""

    model_config = ConfigDict(frozen=True)
    label = "data"

    path: str | None = Field(
        None,
        description="dataset folder written by `memrl data collect ... --out DIR` "
        "(required for qtransformer; made absolute)",
    )
