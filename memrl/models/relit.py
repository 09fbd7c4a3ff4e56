"""ReLiT: the Recurrent Linear Transformer (Pramanik et al. 2023, arXiv 2310.15719, Sec. 3).

Written from the authors' code (subho406/agalite at cd10e66, ``src/models/relit/relit.py``,
``MemoryLayer`` / ``RLTAttentionLayer`` with the ``pp_relu`` kernel their T-Maze config uses).
Per layer and head, with ``x`` the layer-normed block input, ``d_h`` the head size and ``nu`` the
feature expansion (``(x)`` an outer product, flattened to ``[d_h * nu]``)::

    phi(k) = relu(W_k x) (x) relu(W_p1 x)                    # [F = d_h * nu], >= 0
    v      = W_v x                                           # [d_h]
    beta   = sigmoid(W_b x)                                  # [d_h]
    gamma  = sigmoid(W_g x) (x) sigmoid(W_p3 x)              # [F]
    q      = W_q x;  phi(q) = relu(A q) (x) relu(B q)        # [F]: a second projection on q

with relu the authors' activation (``feature_map="relu"``); memrl's default puts elu+1 in its
place (``feature_map="elu1"``, positive everywhere: see ``ReLiTCore``).

``update_rule="projected_sigmoid"`` (the default: the rule of the authors' T-Maze config)::

    C_t = C_{t-1} * (1 - beta_t (x) gamma_t) + (v_t (x) phi(k_t)) * (beta_t (x) gamma_t)
    s_t = s_{t-1} * (1 - gamma_t) + phi(k_t) * gamma_t

``update_rule="outer_decay"`` (memrl's earlier rule, kept for comparison)::

    C_t = ((1 - beta_t) (x) (1 - gamma_t)) * C_{t-1} + (beta_t v_t) (x) (gamma_t phi(k_t))
    s_t = (1 - gamma_t) * s_{t-1} + gamma_t phi(k_t)

Both read ``a_t = C_t phi(q_t) / (s_t . phi(q_t) + eps)``; ``phi(q)`` and ``s`` are
non-negative, so the denominator is at least ``eps``. The heads' ``a_t`` are concatenated and
projected back to ``d_model``; the layer sits in a GTrXL block. At initialisation (beta ~ 1/2,
gamma ~ 1/4) an entry of C keeps ~7/8 of itself per step under projected_sigmoid (half-life ~5
steps) but ~3/8 under outer_decay (half-life < 1 step).

Every weight matrix (per head and per quantity) is initialised separately orthogonal with gain
sqrt(2), biases zero, as the authors' per-head ``Dense`` layers are, though memrl stores them
fused. The state grows as ``layers * heads * d_h * nu * d_h``: AReLiT (arelit.py) removes the
``d_h * nu * d_h`` term.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memrl.models.base import StateSpec
from memrl.models.gating import orthogonal_, orthogonal_blocks_
from memrl.models.linear_attention import (
    LayerState,
    LinearTransformerCore,
    feature_activation,
    linear_scan,
    write_gate_bias_value,
)
from memrl.models.relit_chunked import chunked_readout

UPDATE_RULES = ("projected_sigmoid", "outer_decay")


def outer(left: Tensor, right: Tensor) -> Tensor:
    """``[..., a] (x) [..., b] -> [..., a*b]`` (index ``i * b + j``, the authors' layout)."""
    return (left.unsqueeze(-1) * right.unsqueeze(-2)).flatten(-2)


class ReLiTFeatures(nn.Module):
    """The per-head projections of the authors' ReLiT layer, fused into two matrix products.

    Per head the first projection yields ``[k, v, b, g, q]`` (``d_h`` each) then ``[p1, p3]``
    (``nu`` each); the second, per head, maps ``q`` to ``[A q (d_h), B q (nu)]``.
    ``forward(x [B, T, d_model])`` returns ``key`` phi(k), ``query`` phi(q), ``gamma``
    (each [B, T, H, F]), ``value`` v and ``beta`` (each [B, T, H, d_h]).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_head: int,
        nu: int,
        feature_map: str,
        write_gate_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.d_head, self.nu = num_heads, d_head, nu
        self.act = feature_activation(feature_map)
        self.first = nn.Linear(d_model, num_heads * (5 * d_head + 2 * nu))
        self.second_weight = nn.Parameter(torch.empty(num_heads, d_head + nu, d_head))
        self.second_bias = nn.Parameter(torch.zeros(num_heads, d_head + nu))
        with torch.no_grad():
            w = self.first.weight.view(num_heads, 5 * d_head + 2 * nu, d_model)
            for h in range(num_heads):
                orthogonal_blocks_(w[h, : 5 * d_head], d_head)
                orthogonal_blocks_(w[h, 5 * d_head :], nu)
                orthogonal_blocks_(self.second_weight[h, :d_head], d_head)
                orthogonal_blocks_(self.second_weight[h, d_head:], nu)
            nn.init.zeros_(self.first.bias)
            # Initial bias of the g logits (each head's 4th d_h rows; gamma = sigmoid(g) (x)
            # sigmoid(p3)): negative makes gamma small, so C and s keep what they hold at init.
            # Not beta's: the readout C phi(q) / s phi(q) scales with beta (C holds beta, s not).
            bias = self.first.bias.view(num_heads, 5 * d_head + 2 * nu)
            bias[:, 3 * d_head : 4 * d_head].fill_(write_gate_bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        batch, steps, _ = x.shape
        d, nu = self.d_head, self.nu
        heads = self.first(x).view(batch, steps, self.num_heads, 5 * d + 2 * nu)
        k, v, b, g, q, p1, p3 = heads.split([d, d, d, d, d, nu, nu], dim=-1)
        q2 = torch.einsum("bthe,hfe->bthf", q, self.second_weight) + self.second_bias
        qa, qb = q2.split([d, nu], dim=-1)
        return {
            "key": outer(self.act(k), self.act(p1)),
            "query": outer(self.act(qa), self.act(qb)),
            "gamma": outer(torch.sigmoid(g), torch.sigmoid(p3)),
            "value": v,
            "beta": torch.sigmoid(b),
        }


class ReLiTAttention(nn.Module):
    """Multi-head gated linear attention with the full matrix memory ``(C, s)`` per head.

    ``forward(u [B, T, d_model], keep [B, T], state, context)`` with state
    ``{"C": [B, H, d_h, F], "s": [B, H, F]}`` returns ([B, T, d_model], new state).

    ``chunk`` (steps): sequences of more than one step read ``C`` out chunk by chunk
    (:mod:`memrl.models.relit_chunked`, ``C`` never materialised per step); None runs
    ``linear_scan`` over ``C`` instead (the reference the chunked form is tested against).
    """

    chunk: int | None = 16

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_head: int,
        nu: int,
        eps: float,
        update_rule: str,
        feature_map: str,
        write_gate_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.features = ReLiTFeatures(d_model, num_heads, d_head, nu, feature_map, write_gate_bias)
        self.project = orthogonal_(nn.Linear(num_heads * d_head, d_model))
        self.eps, self.update_rule = eps, update_rule

    def forward(
        self, u: Tensor, keep: Tensor, state: LayerState, context: dict[str, Tensor]
    ) -> tuple[Tensor, LayerState]:
        f = self.features(u)
        dtype = state["C"].dtype
        keep = keep[:, :, None, None].to(dtype)  # [B, T, 1, 1]; 0 cuts the carried-in state
        key, value = f["key"].to(dtype), f["value"].to(dtype)
        beta, gamma = f["beta"].to(dtype), f["gamma"].to(dtype)
        normaliser = linear_scan([(1 - gamma) * keep], gamma * key, state["s"])  # [B, T, H, F]
        query = f["query"]
        if self.chunk is not None and u.shape[1] > 1:
            numerator, last = chunked_readout(
                self.update_rule,
                key,
                value,
                beta,
                gamma,
                keep[:, :, 0, 0],
                query,
                state["C"],
                self.chunk,
            )
            return self._read(numerator.to(query.dtype), normaliser, query), {
                "C": last,
                "s": normaliser[:, -1],
            }
        if self.update_rule == "projected_sigmoid":
            write = beta.unsqueeze(-1) * gamma.unsqueeze(-2)  # beta (x) gamma [B, T, H, D, F]
            memory = linear_scan(
                [(1 - write) * keep.unsqueeze(-1)],
                value.unsqueeze(-1) * key.unsqueeze(-2) * write,
                state["C"],
            )
        else:  # outer_decay: the decay (1 - beta)(1 - gamma)^T passed as two factors
            memory = linear_scan(
                [(1 - beta).unsqueeze(-1), ((1 - gamma) * keep).unsqueeze(-2)],
                (beta * value).unsqueeze(-1) * (gamma * key).unsqueeze(-2),
                state["C"],
            )  # [B, T, H, D, F]
        numerator = torch.einsum("bthdf,bthf->bthd", memory.to(query.dtype), query)
        return self._read(numerator, normaliser, query), {
            "C": memory[:, -1],
            "s": normaliser[:, -1],
        }

    def _read(self, numerator: Tensor, normaliser: Tensor, query: Tensor) -> Tensor:
        """``C phi(q) / (s . phi(q) + eps)`` per head, projected: [B, T, d_model]."""
        denominator = torch.einsum("bthf,bthf->bth", normaliser.to(query.dtype), query)
        attended = numerator / (denominator.unsqueeze(-1) + self.eps)  # [B, T, H, D]
        return self.project(attended.flatten(2))


class ReLiTCore(LinearTransformerCore):
    """ReLiT memory core; state ``{"C": [layers, H, d_h, nu*d_h], "s": [layers, H, nu*d_h]}``.

    Defaults are the authors' T-Maze ReLiT settings (agalite repo, config/tmaze/relit.yaml):
    ``num_layers=4``, ``d_model=128``, ``d_head=64``, ``num_heads=4``, ``d_ff=128`` (their
    ``d_ffc``), feature expansion ``nu=2`` and ``update_rule="projected_sigmoid"``, except two:
    ``gate_bias`` (below) and ``feature_map="elu1"`` (elu+1 in the outer-product feature map)
    where the authors' ``pp_relu`` kernel has relu (``feature_map="relu"``). With relu, ReLiT
    learned the quick suite's T-Maze on 1 of 3 seeds at lr 2e-3 and 1 of 3 at 1e-3: the cue
    step's key was exactly zero in some heads from initialisation (see
    ``linear_attention.FEATURE_MAPS``); with elu1 on 6 of 6 (docs/results/linear-features.md).
    The input embedding is a plain ``Linear`` (no ReLU), as theirs. The gates are the authors'
    ``GRUGatingUnit``, but their bias ``b_g`` defaults to 0 where theirs (GTrXL's) is 2: on
    T-Maze 8 with 2-step sequences and a 64-step limit ReLiT learned on 3 of 4 seeds with 0 and
    0 of 4 with 2 (the block starts as the identity, and the policy settles on the memoryless
    choice first; as GTrXL's ``gate_bias``).
    ``eps=1e-5`` is the normaliser guard of the authors' AReLiT layer (their ReLiT used 1e-10;
    1e-5 keeps float32 and bf16 away from a ~0 denominator).
    ``write_gate_bias`` is the initial bias of the g logits, gamma's ``d_h`` factor (the
    authors': 0). Negative starts with small writes that decay slowly, as AReLiT's option does:
    33 steps after a write about 1% of it is left in C at 0 and about 70% at -4. Unlike AReLiT's
    option it leaves beta alone, which would shrink the readout (C holds beta, s does not).

    Raises ValueError for a non-positive size or ``eps``, an unknown ``update_rule`` or
    ``feature_map``, or a ``write_gate_bias`` that is not a number.
    """

    name = "relit"
    layer_fields = ("C", "s")
    embedding_relu = False

    def __init__(
        self,
        input_dim: int,
        *,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        d_head: int = 64,
        nu: int = 2,
        d_ff: int = 128,
        gate_bias: float = 0.0,
        eps: float = 1e-5,
        update_rule: str = "projected_sigmoid",
        feature_map: str = "elu1",
        write_gate_bias: float = 0.0,
    ) -> None:
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"update_rule must be one of {UPDATE_RULES}, got {update_rule!r}")
        feature_activation(feature_map)  # validate before building
        self.write_gate_bias = write_gate_bias_value(write_gate_bias)
        self.update_rule, self.feature_map = update_rule, feature_map
        super().__init__(
            input_dim,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
            d_head=d_head,
            nu=nu,
            d_ff=d_ff,
            gate_bias=gate_bias,
            eps=eps,
        )

    def _make_attention(self) -> nn.Module:
        return ReLiTAttention(
            self.d_model,
            self.num_heads,
            self.d_head,
            self.nu,
            self.eps,
            self.update_rule,
            self.feature_map,
            self.write_gate_bias,
        )

    def state_spec(self) -> dict[str, StateSpec]:
        layers, heads, d_head, features = (
            self.num_layers,
            self.num_heads,
            self.d_head,
            self.nu * self.d_head,
        )
        return {
            "C": StateSpec("carry", (layers, heads, d_head, features), self.state_dtype),
            "s": StateSpec("carry", (layers, heads, features), self.state_dtype),
        }
