"""How much a core's output at the T-Maze junction depends on the first-step cue, untrained.

T-Maze 16 in Bakker's layout without distractors: the cue, 15 corridor cells, the junction. Both
cues go through the same random encoder (Linear 3 -> 64, ReLU, as memrl's MLP encoder) and the
same core, built with the horizon suite's tmaze16 sizes. Printed per core: the median over 20
initialisations of ||y_up - y_down|| / ||y_up|| at the junction (16 steps after the cue) and at
step 1, with the junction's min and max.

    OMP_NUM_THREADS=1 python docs/results/horizon/cue_at_init.py
"""

import numpy as np
import torch

from memrl.envs.tmaze import CORRIDOR, CUE_DOWN, CUE_UP, JUNCTION
from memrl.models import make_core

TRANSFORMER = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64)
CORES = {
    "gru": ("gru", dict(hidden_size=64)),
    "lstm": ("lstm", dict(hidden_size=64)),
    "trxl": ("trxl", dict(TRANSFORMER, memory_len=64)),
    "gtrxl": ("gtrxl", dict(TRANSFORMER, memory_len=64)),
    "relit (bias 0)": ("relit", dict(TRANSFORMER, nu=2)),
    "relit (bias -4)": ("relit", dict(TRANSFORMER, nu=2, write_gate_bias=-4.0)),
    "arelit (bias 0)": ("arelit", dict(TRANSFORMER, nu=2, r=2)),
    "arelit (bias -4)": ("arelit", dict(TRANSFORMER, nu=2, r=2, write_gate_bias=-4.0)),
    "brt (blocks of 4)": ("brt", dict(TRANSFORMER, block_len=4, num_state=4)),
}


def episode(cue: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor([cue, *[CORRIDOR] * 15, JUNCTION], dtype=torch.float32)


def main() -> None:
    torch.set_num_threads(1)
    x = torch.stack([episode(CUE_UP), episode(CUE_DOWN)])
    first = torch.zeros(2, x.shape[1], dtype=torch.bool)
    first[:, 0] = True
    for label, (name, kwargs) in CORES.items():
        junction, step1 = [], []
        for seed in range(20):
            torch.manual_seed(seed)
            encoder = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU())
            core = make_core(name, 64, **kwargs)
            with torch.no_grad():
                y, _ = core(encoder(x), None, first)
            rel = (y[0] - y[1]).norm(dim=-1) / y[0].norm(dim=-1)
            junction.append(rel[-1].item())
            step1.append(rel[1].item())
        print(
            f"{label:18s} junction {np.median(junction):.4f} "
            f"(min {min(junction):.4f}, max {max(junction):.4f})  step 1 {np.median(step1):.4f}"
        )


if __name__ == "__main__":
    main()
