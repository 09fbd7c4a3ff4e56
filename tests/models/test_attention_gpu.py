"""On CUDA, the window cores run on fused SDPA kernels in bf16 and stay close to fp32.

The relative-position term is a float ``attn_mask``, which rules out flash attention; the test
restricts SDPA to the flash and memory-efficient backends, so it fails with "No available
kernel" if a core's call would otherwise fall back to the math kernel. Run on a GPU machine:
``pytest -q -m gpu tests/models/test_attention_gpu.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from memrl.models import make_core

pytestmark = pytest.mark.gpu

D_IN = 11
FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
SIZES = dict(d_model=64, num_layers=2, num_heads=4, d_ff=128)
CASES = [
    ("trxl", dict(SIZES, memory_len=32)),
    ("gtrxl", dict(SIZES, memory_len=32)),
    ("local_xl", dict(SIZES, window=32)),
    ("trxl", dict(SIZES, memory_len=32, kv_heads=1)),
    ("gtrxl", dict(SIZES, memory_len=32, kv_heads=2)),
    ("local_xl", dict(SIZES, window=32, kv_heads=1)),
]
IDS = ["trxl", "gtrxl", "local_xl", "trxl-mqa", "gtrxl-gqa", "local_xl-mqa"]


def inputs(steps: int = 150, batch: int = 6):
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(batch, steps, D_IN, device="cuda", generator=g)
    first = torch.rand(batch, steps, device="cuda", generator=g) < 0.02
    first[:, 0] = True
    return x, first


def relative_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    return float((approx.float() - exact).norm() / exact.norm())


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_bf16_autocast_on_fused_kernels_matches_fp32(name, kwargs):
    torch.manual_seed(0)
    core = make_core(name, input_dim=D_IN, **kwargs).cuda().eval()
    x, first = inputs()
    with torch.no_grad():
        with sdpa_kernel(SDPBackend.MATH):
            y32, s32 = core(x, None, first)
            y32_next, _ = core(x, s32, first)
        with sdpa_kernel(FUSED), torch.autocast("cuda", dtype=torch.bfloat16):
            y16, s16 = core(x, None, first)
            y16_next, _ = core(x, s16, first)
    assert relative_error(y16, y32) < 3e-2
    assert relative_error(y16_next, y32_next) < 3e-2
    assert torch.equal(s16["memory_mask"], s32["memory_mask"])
    assert s16["memory"].dtype == torch.float32  # state keeps the parameters' dtype


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_bf16_weights_train_on_fused_kernels(name, kwargs):
    torch.manual_seed(0)
    core32 = make_core(name, input_dim=D_IN, **kwargs).cuda()
    core16 = make_core(name, input_dim=D_IN, **kwargs).cuda()
    core16.load_state_dict(core32.state_dict())
    core16 = core16.to(torch.bfloat16)
    x, first = inputs()
    probe = torch.randn(x.shape[0], x.shape[1], core32.output_dim, device="cuda")
    with sdpa_kernel(SDPBackend.MATH):
        (core32(x, None, first)[0] * probe).sum().backward()
    with sdpa_kernel(FUSED):
        y16, state = core16(x.bfloat16(), None, first)
        (y16.float() * probe).sum().backward()
    assert state["memory"].dtype == torch.bfloat16
    for pname, p16 in core16.named_parameters():
        assert p16.grad is not None and torch.isfinite(p16.grad).all(), pname
    # Gradients agree in direction: bf16 noise is far below the signal.
    g32 = torch.cat([p.grad.flatten() for p in core32.parameters()])
    g16 = torch.cat([p.grad.float().flatten() for p in core16.parameters()])
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.95
