"""What a T-Maze PPO run's checkpoints do at the junction, one line per checkpoint.

For a straight walk to the junction under each cue (Bakker's layout, no distractors): the
policy's probabilities of "up" and "down" at the junction, and the relative change of the policy
core's output there between the two cues (0: the cue is not used). A run that learns separates the
two cues; in the runs that fail, both cues' probabilities move together to one arm.

    python docs/results/horizon/junction_probe.py CHECKPOINT_ROOT [EVERY]

CHECKPOINT_ROOT holds a run's ``iter_*`` checkpoints (``memrl train`` with ``checkpoint.every``
and a ``checkpoint.keep`` large enough to keep them); EVERY takes every n-th of them.
"""

import sys
from pathlib import Path

import numpy as np
import torch

from memrl import checkpoints, eval_policies
from memrl.config import config_from_dict
from memrl.envs.tmaze import CORRIDOR, CUE_DOWN, CUE_UP, DOWN, JUNCTION, UP


def main(root: Path, every: int) -> None:
    paths = checkpoints.run_checkpoints(root)[::every]
    if not paths:
        raise SystemExit(f"no iter_* checkpoints under {root}")
    cfg = config_from_dict(checkpoints.load_config_data(paths[0]))
    env = cfg.task.env_kwargs
    if env.get("num_distractors") or env.get("observation", "cells") != "cells":
        raise SystemExit("the probe builds Bakker's observations without distractors")
    corridor = [CORRIDOR] * (env["corridor_len"] - 1)
    walk = [[cue, *corridor, JUNCTION] for cue in (CUE_UP, CUE_DOWN)]
    obs = torch.tensor(walk, dtype=torch.float32)
    first = torch.zeros(obs.shape[:2], dtype=torch.bool)
    first[:, 0] = True
    with eval_policies.local_algorithm(cfg, paths[0] / checkpoints.ALGORITHM_DIR) as algo:
        for path in paths:
            eval_policies.restore_weights(algo, path / checkpoints.ALGORITHM_DIR)
            module = algo.get_module()
            state = {
                k: torch.as_tensor(v)[None].expand(2, *np.shape(v)).clone()
                for k, v in module.get_initial_state().items()
            }
            batch = {"obs": obs, "state_in": state, "first": first}
            with torch.no_grad():
                # the policy branch's core output (a private helper of memrl's RLModule)
                y, _ = module._run_branch(module._prefixes["pi"], module.pi_branch, batch)
                p = torch.softmax(module.pi_head(y)[:, -1], -1)
            dep = ((y[0, -1] - y[1, -1]).norm() / y[0, -1].norm()).item()
            print(
                f"{path.name}: cue up p(up) {p[0, UP]:.2f} p(down) {p[0, DOWN]:.2f} | "
                f"cue down p(up) {p[1, UP]:.2f} p(down) {p[1, DOWN]:.2f} | "
                f"core output's cue dependence {dep:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
