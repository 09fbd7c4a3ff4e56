"""``write_gate_bias`` of AReLiT and ReLiT: the initial bias of their beta/gamma gate logits.

With the authors' zero bias, beta = sigmoid(b) ~ 0.5 at initialisation: AReLiT's value memory
halves every step and ReLiT's C keeps ~7/8 of itself, so a first-step cue fades within a few
steps. A negative bias starts with small writes and decays near 1: the memory then still holds
the cue many steps later, which is what learning beyond the training sequence needs (the stored
state must carry the cue before any gradient has taught it to).
"""

import pytest
import torch

from memrl.models import make_core

KW = dict(d_model=16, num_layers=1, num_heads=2, d_head=8, nu=2, d_ff=32)


def _cue_share(write_gate_bias: float, seed: int, steps: int = 9, core_name="arelit") -> float:
    """How far the value memory after ``steps`` steps tells cue A from cue B: two episodes equal
    except at their first step (a corridor: one observation repeated), relative difference."""
    torch.manual_seed(seed)
    core = make_core(core_name, 4, write_gate_bias=write_gate_bias, **KW).double().eval()
    x = torch.randn(1, 1, 4, dtype=torch.float64).repeat(2, steps, 1)
    x[:, 1:] = torch.randn(4, dtype=torch.float64)
    x[1, 0] = -x[0, 0]
    first = torch.zeros(2, steps, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        _, state = core(x, None, first)
    values = state["values" if core_name == "arelit" else "C"]
    return float((values[0] - values[1]).norm() / values[0].norm())


def test_negative_write_gate_bias_keeps_a_first_step_cue_in_memory() -> None:
    # Measured: 0.05-0.14 with the authors' 0, 1.5-1.9 with -4 (seeds 0-2).
    for seed in range(4):
        authors, long_memory = _cue_share(0.0, seed), _cue_share(-4.0, seed)
        assert long_memory > 5 * authors, (seed, authors, long_memory)


def test_write_gate_bias_only_moves_the_beta_gamma_rows() -> None:
    torch.manual_seed(0)
    core = make_core("arelit", 4, write_gate_bias=-2.5, **KW)
    bias = core.state_dict()["blocks.0.attention.features.kqvbg.bias"].view(2, 5, 8)
    assert torch.all(bias[:, :3] == 0) and torch.all(bias[:, 3:] == -2.5)


def _relit_first_write_kept(write_gate_bias: float, seed: int, steps: int = 33) -> float:
    """Mean share of the first step's write still in ReLiT's C ``steps - 1`` steps later:
    the product of ``1 - beta (x) gamma`` over those steps, averaged over C's entries."""
    torch.manual_seed(seed)
    core = make_core("relit", 4, write_gate_bias=write_gate_bias, **KW).double()
    with torch.no_grad():
        f = core.blocks[0].attention.features(torch.randn(1, steps, 16, dtype=torch.float64))
    write = f["beta"].unsqueeze(-1) * f["gamma"].unsqueeze(-2)  # [1, T, H, d_h, F]
    return float((1 - write[:, 1:]).prod(dim=1).mean())


def test_negative_write_gate_bias_keeps_a_first_step_write_in_relit_memory() -> None:
    # 33 steps: T-Maze 32's cue-to-junction distance. Measured: 0.013-0.016 with the authors'
    # 0, 0.71-0.74 with -4 (seeds 0-3).
    for seed in range(4):
        authors = _relit_first_write_kept(0.0, seed)
        long_memory = _relit_first_write_kept(-4.0, seed)
        assert authors < 0.05 and long_memory > 0.5, (seed, authors, long_memory)


def test_relit_write_gate_bias_only_moves_the_g_rows() -> None:
    torch.manual_seed(0)
    core = make_core("relit", 4, write_gate_bias=-2.5, **KW)
    # Per head: k, v, b, g, q (d_h = 8 rows each), then p1, p3 (nu = 2 each).
    bias = core.state_dict()["blocks.0.attention.features.first.bias"].view(2, 5 * 8 + 2 * 2)
    assert torch.all(bias[:, 24:32] == -2.5)
    assert torch.all(bias[:, :24] == 0) and torch.all(bias[:, 32:] == 0)


@pytest.mark.parametrize("core_name", ["arelit", "relit"])
@pytest.mark.parametrize("bad", ["-2", None, True])
def test_write_gate_bias_must_be_a_number(bad, core_name) -> None:
    with pytest.raises(ValueError, match="write_gate_bias must be a number"):
        make_core(core_name, 4, write_gate_bias=bad, **KW)
