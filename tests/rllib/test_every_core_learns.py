"""Every registered core learns a recall task with PPO, also beyond its training sequence.

A T-Maze (Bakker 2001; the ReLiT paper's task, shrunk): the cue is shown only at the first step
and the choice comes at the junction.

Every core learns corridor 8 (the choice 8 steps after the cue) with training sequences of 2
steps, a quarter of the memory horizon. The cue reaches the choice only through the state the
actor had at the chunk's start (rebuilt from the per-step records), which is what memrl's per-step
state exists for. A core that passes it has learned a short recall task too, so nothing else runs
here (CI's time budget); every core also learns T-Maze 4 and 8 with covering sequences in
`memrl repro quick` (docs/results/quick.md).

A memoryless policy succeeds about half the time (see test_memoryless_baseline_stays_at_chance).
PPO on a single seed now and then stays at chance (measured: ReLiT's seed 0 at 0.52 after 40
iterations on the short recall task, seeds 1 and 2 at 100% after 5 and 15), so a core gets up
to five seeds and the test fails when it learns on none: it asks whether a core *can* learn
beyond its sequence; how often it does is the learning suites' measure. Which seeds learn is not
portable across CPUs (float rounding changes the trajectory): GTrXL and BRT learned on seed 0
or 1 on the machines of earlier CI runs; on an AMD EPYC (torch 2.13 CPU) GTrXL learned only on
seed 2 of 0-3 and BRT only on seed 4 of 0-4 (the rest at 0.0-0.52).
The parametrisation comes from the core registry, so a new core is tested the day it is added
and needs an entry in LEARNING_KWARGS.
"""

from __future__ import annotations

import pytest

from memrl.models import CORES

pytestmark = pytest.mark.slow
pytest.importorskip("ray")

from tmaze_learning import train_tmaze  # noqa: E402

# Small sizes: the tests measure whether a core can learn to remember, not its capacity.
LEARNING_KWARGS: dict[str, dict] = {
    "gru": dict(hidden_size=32),
    "lstm": dict(hidden_size=32),
    # Window cores: a 24-step memory covers the cue in the untrained policy's longer episodes
    # (see TIME_LIMIT). With 12, TrXL failed 2 of 2 seeds at the 64-step limit; with 24 it
    # learned 3 of 3 (local_xl 3 of 3).
    "trxl": dict(d_model=32, num_layers=1, num_heads=2, memory_len=24, d_ff=64),
    # GTrXL, ReLiT and AReLiT run with their default gate_bias 0 (GTrXL's paper: 2), which these
    # runs chose: see GTrXLCore and ReLiTCore.
    "gtrxl": dict(d_model=32, num_layers=1, num_heads=2, memory_len=24, d_ff=64),
    "relit": dict(d_model=32, num_layers=1, num_heads=2, d_head=16, nu=2, d_ff=64),
    # write_gate_bias -4: beta, gamma ~ 0.02 at init, so the value memory keeps the first-step
    # cue across the chunk boundary before any gradient has taught it to. With the authors' 0
    # (beta ~ 0.5, memory halves every step) seeds 0-3 all stayed at chance (0.50-0.515 after
    # 60-80 iterations); with -4 seeds 0, 2, 3, 4 reached 100% (iterations 20-50), seed 1
    # stayed at 0.515.
    "arelit": dict(
        d_model=32, num_layers=1, num_heads=2, d_head=16, nu=2, d_ff=64, write_gate_bias=-4.0
    ),
    # Blocks as long as the 2-step training sequences: the state vectors change at every block
    # end, so 4 updates carry the cue to the corridor-8 junction. (Block 4 on 2-step sequences
    # stayed at chance on seed 0 after 60 iterations; blocks of 2: seeds 0 and 2 learned, seed 1
    # stayed at 0.52.)
    "brt": dict(d_model=32, num_layers=1, num_heads=2, block_len=2, num_state=4, d_ff=64),
    "local_xl": dict(d_model=32, num_layers=1, num_heads=2, window=24, d_ff=64),
}
# AReLiT at 2e-3 stayed at chance on 3 of 3 seeds of the quick suite; at 1e-3 it learned 3 of 3.
LR = {"gru": 3e-3, "lstm": 3e-3, "arelit": 1e-3}
DEFAULT_LR = 2e-3
# Episode time limit: 8x the corridor. Nothing rewards walking right before the junction, so the
# untrained policy is a random walk, which at tmaze_learning's default 2x + 4 (20 steps) rarely
# reaches the junction: BRT's seed 0 never did in 40 iterations; at 64 BRT and AReLiT reached it
# within 5 iterations.
TIME_LIMIT = 64
MEMORY_CORES = [c for c in CORES if c != "mlp"]


def test_every_registered_core_has_learning_settings() -> None:
    assert set(MEMORY_CORES) == set(LEARNING_KWARGS)


SEEDS = (0, 1, 2, 3, 4)


def _learns(core: str, seeds: tuple[int, ...] = SEEDS, **task) -> None:
    runs = []
    for seed in seeds:
        run = train_tmaze(
            core, LEARNING_KWARGS[core], lr=LR.get(core, DEFAULT_LR), stop_at=0.98, seed=seed,
            **task,
        )  # fmt: skip
        runs.append(run)
        if run.success >= 0.9:
            return
    pytest.fail(f"{core} did not learn {task} on seeds {seeds}: {runs}")


@pytest.mark.parametrize("core", MEMORY_CORES)
def test_core_learns_beyond_its_training_sequence(ray_local, core: str) -> None:
    _learns(core, corridor_len=8, max_seq_len=2, max_iters=60, max_steps=TIME_LIMIT)


def test_memoryless_baseline_stays_at_chance(ray_local) -> None:
    run = train_tmaze(
        "mlp",
        dict(hidden_size=32),
        corridor_len=4,
        max_seq_len=8,
        lr=3e-3,
        max_iters=20,
        stop_at=None,
    )
    # Chance is 0.5; 200 episodes give a standard error of 0.035.
    assert run.success <= 0.62, f"mlp: {run}"
