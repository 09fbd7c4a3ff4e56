"""Every registered core learns a recall task with PPO, also beyond its training sequence.

Two T-Mazes (Bakker 2001; the ReLiT paper's task, shrunk): the cue is shown only at the first
step and the choice comes at the junction.

* beyond the training sequence (every core): corridor 8 (the choice 8 steps after the cue)
  with training sequences of 2 steps, a quarter of the memory horizon. The cue reaches the
  choice only through the state the actor had at the chunk's start (rebuilt from the per-step
  records), which is what memrl's per-step state exists for. A core that passes it has learned
  a short recall task too, so it runs nothing else here (CI's time budget);
* short recall (only the cores that do not learn beyond their sequence yet): corridor 4 (the
  choice 4 steps after the cue) with training sequences of 8 steps, which cover the episode.

Every core, those included, also learns T-Maze 4 and 8 with covering sequences in
`memrl repro quick` (docs/results/quick.md).

A memoryless policy succeeds about half the time (see test_memoryless_baseline_stays_at_chance).
PPO on a single seed now and then stays at chance (measured: ReLiT's seed 0 at 0.52 after 40
iterations on the short recall task, seeds 1 and 2 at 100% after 5 and 15), so a core gets a
second seed before the test fails: it fails when a core cannot learn on two seeds in a row.
The parametrisation comes from the core registry, so a new core is tested the day it is added
and needs an entry in LEARNING_KWARGS.
"""

from __future__ import annotations

import pytest

from memrl.models import CORES

pytestmark = pytest.mark.slow
pytest.importorskip("ray")

from tmaze_learning import train_tmaze  # noqa: E402

# Small sizes: the tests measure whether a core can learn to remember, not its capacity. Window
# cores get a memory that covers the corridor-8 horizon.
LEARNING_KWARGS: dict[str, dict] = {
    "gru": dict(hidden_size=32),
    "lstm": dict(hidden_size=32),
    "trxl": dict(d_model=32, num_layers=1, num_heads=2, memory_len=12, d_ff=64),
    "gtrxl": dict(d_model=32, num_layers=1, num_heads=2, memory_len=12, d_ff=64),
    "relit": dict(d_model=32, num_layers=1, num_heads=2, d_head=16, nu=2, d_ff=64),
    "arelit": dict(d_model=32, num_layers=1, num_heads=2, d_head=16, nu=2, d_ff=64),
    "brt": dict(d_model=32, num_layers=1, num_heads=2, block_len=4, num_state=4, d_ff=64),
    "local_xl": dict(d_model=32, num_layers=1, num_heads=2, window=12, d_ff=64),
}
# AReLiT at 2e-3 stayed at chance on 3 of 3 seeds of the quick suite; at 1e-3 it learned 3 of 3.
LR = {"gru": 3e-3, "lstm": 3e-3, "arelit": 1e-3}
DEFAULT_LR = 2e-3
MEMORY_CORES = [c for c in CORES if c != "mlp"]


def test_every_registered_core_has_learning_settings() -> None:
    assert set(MEMORY_CORES) == set(LEARNING_KWARGS)


SEEDS = (0, 1)


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


# Known not to learn yet (tracked in issue 9's closing note), although both solve the short recall
# task. AReLiT: 0.515 on seeds 0 and 1 after 60 iterations, also with a 64-step time limit (a
# standalone run of the same settings reached 100% at iteration 45; the difference is not explained
# yet). BRT (block 4, longer than the 2-step sequences): 0.00 at this 20-step limit (the untrained
# policy never reaches the junction), 0.515 after 60 iterations (seed 0) with a 64-step one; its
# state vectors change only at block ends, so with sequences shorter than a block the write gets a
# gradient only from chunks that straddle a block end. strict: the test fails once they learn.
# (ReLiT was here too, at chance on both seeds before its chunked training form.)
NOT_YET_BEYOND = {
    "arelit": "AReLiT stays at chance on corridor 8 with 2-step sequences",
    "brt": "BRT (block_len 4 > max_seq_len 2) does not learn corridor 8 with 2-step sequences",
}


@pytest.mark.parametrize("core", sorted(NOT_YET_BEYOND))
def test_core_learns_short_recall(ray_local, core: str) -> None:
    _learns(core, corridor_len=4, max_seq_len=8, max_iters=40)


def _beyond_cases() -> list:
    return [
        pytest.param(c, marks=pytest.mark.xfail(reason=NOT_YET_BEYOND[c], strict=True))
        if c in NOT_YET_BEYOND
        else c
        for c in MEMORY_CORES
    ]


@pytest.mark.parametrize("core", _beyond_cases())
def test_core_learns_beyond_its_training_sequence(ray_local, core: str) -> None:
    if core in NOT_YET_BEYOND:  # one short try: enough to notice when it starts to learn
        _learns(core, seeds=(0,), corridor_len=8, max_seq_len=2, max_iters=30)
        return
    _learns(core, corridor_len=8, max_seq_len=2, max_iters=60)


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
