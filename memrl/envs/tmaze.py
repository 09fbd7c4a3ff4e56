"""Bakker's T-Maze with distractor bits, as used by the ReLiT paper (Pramanik et al., 2023).

The agent starts at the left end of a corridor of ``corridor_len`` cells; the last cell is the
T-junction. Only the first observation shows which arm (up or down) holds the goal. At the
junction, moving up or down ends the episode: +4 for the goal arm, -1 for the other. Every other
step costs -0.1. Moving left/right walks the corridor (clamped at both ends); up/down inside the
corridor is a wasted step. The episode is cut off (``truncated=True``) after ``max_steps`` steps.

Observation, ``MultiBinary(3 + num_distractors)`` (int8):

- bits 0..2, the cell type: goal-up cue ``011``, goal-down cue ``110`` (first step only),
  corridor ``101``, junction ``010``;
- bits 3.., distractors: zeros at the first step, then i.i.d. fair coin flips at every step.

With ``observation="position"`` the layout is instead the one the ReLiT authors' T-Maze configs
train on (``tmazev2``, their ``SimplerTMazeWDistractors``, subho406/agalite): two cue bits (up
``01``, down ``10``) at the first step and ``00`` after it, then the position as a Gray code (8
bits, more for a corridor longer than 256 cells), then the distractors. The position is seen, so
walking the corridor needs no memory; the goal arm still does. Dynamics and rewards are the same.

Actions, ``Discrete(4)``: 0 up, 1 down, 2 left, 3 right.

The optimal return is ``4 - 0.1 * (corridor_len - 1)`` (walk right ``corridor_len - 1`` times,
then take the cued arm). The junction observation does not depend on the goal side, so a
memoryless policy succeeds at most half the time.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3

CUE_UP = (0, 1, 1)
CUE_DOWN = (1, 1, 0)
CORRIDOR = (1, 0, 1)
JUNCTION = (0, 1, 0)

REWARD_CORRECT = 4.0
REWARD_WRONG = -1.0
REWARD_STEP = -0.1

OBSERVATIONS = ("cells", "position")
# The authors' tmazev2 cue bits (first step only) and their Gray code width.
POSITION_CUE = {UP: (0, 1), DOWN: (1, 0)}
GRAY_BITS = 8

# Distractor bits are drawn this many steps at a time: one numpy call per block instead of one
# per step is what keeps the scalar env above 100k steps/s.
_BLOCK = 1024


class TMazeEnv(gym.Env[np.ndarray, np.int64]):
    """T-Maze with a one-step goal cue and optional distractor bits.

    Args:
        corridor_len: cells from the start to the junction inclusive (>= 2); the ReLiT paper's
            configs use 120 to 200.
        num_distractors: random bits appended to each observation (the paper uses 6).
        max_steps: time limit; reaching it truncates the episode (>= 1).
        observation: ``"cells"`` (Bakker's cell-type bits) or ``"position"`` (the authors'
            tmazev2: cue bits, the position's Gray code; see the module docstring).

    Raises:
        ValueError: a kwarg out of range (the message names it and the allowed values).

    ``info`` at the step that ends an episode at the junction holds ``success`` (bool).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        corridor_len: int = 10,
        num_distractors: int = 0,
        max_steps: int = 5000,
        render_mode: str | None = None,
        observation: str = "cells",
    ) -> None:
        if not isinstance(corridor_len, (int, np.integer)) or corridor_len < 2:
            raise ValueError(f"corridor_len must be an int >= 2, got {corridor_len!r}")
        if not isinstance(num_distractors, (int, np.integer)) or num_distractors < 0:
            raise ValueError(f"num_distractors must be an int >= 0, got {num_distractors!r}")
        if not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
        if observation not in OBSERVATIONS:
            raise ValueError(
                f"observation must be one of {list(OBSERVATIONS)}, got {observation!r}"
            )
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be one of {[None, *self.metadata['render_modes']]}, "
                f"got {render_mode!r}"
            )
        self.corridor_len = int(corridor_len)
        self.num_distractors = int(num_distractors)
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation = observation
        # The leading bits of every observation, per position (the distractors follow them).
        if observation == "cells":
            self._cells = np.tile(np.array(CORRIDOR, np.int8), (self.corridor_len, 1))
            self._cells[-1] = JUNCTION
            cues = {UP: CUE_UP, DOWN: CUE_DOWN}
        else:
            width = max(GRAY_BITS, (self.corridor_len - 1).bit_length())
            gray = [p ^ (p >> 1) for p in range(self.corridor_len)]
            codes = [[(g >> (width - 1 - i)) & 1 for i in range(width)] for g in gray]
            self._cells = np.concatenate(
                [np.zeros((self.corridor_len, 2), np.int8), np.array(codes, np.int8)], axis=1
            )
            cues = {g: (*POSITION_CUE[g], *codes[0]) for g in (UP, DOWN)}
        self._head = head = self._cells.shape[1]
        self.observation_space = spaces.MultiBinary(head + self.num_distractors)
        self.action_space = spaces.Discrete(4)

        n = head + self.num_distractors
        self._obs_cue = {g: np.zeros(n, np.int8) for g in (UP, DOWN)}
        for g in (UP, DOWN):
            self._obs_cue[g][:head] = cues[g]
        self._bits = np.zeros((0, self.num_distractors), np.int8)
        self._bit_i = 0
        self._pos = 0
        self._goal = UP
        self._t = 0
        self._done = True

    def _obs(self) -> np.ndarray:
        head = self._head
        obs = np.empty(head + self.num_distractors, np.int8)
        obs[:head] = self._cells[self._pos]
        if self.num_distractors:
            if self._bit_i == len(self._bits):
                self._bits = self.np_random.integers(
                    0, 2, size=(_BLOCK, self.num_distractors), dtype=np.int8
                )
                self._bit_i = 0
            obs[head:] = self._bits[self._bit_i]
            self._bit_i += 1
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``options={"goal": 0 or 1}`` fixes the goal arm (tests, demos)."""
        super().reset(seed=seed)
        if seed is not None:
            # A seeded reset must not reuse bits drawn from the previous generator.
            self._bits = self._bits[:0]
            self._bit_i = 0
        options = options or {}
        unknown = set(options) - {"goal"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; valid: ['goal']")
        if "goal" in options:
            if options["goal"] not in (UP, DOWN):
                raise ValueError(
                    f"reset option goal must be 0 (up) or 1 (down), got {options['goal']!r}"
                )
            self._goal = int(options["goal"])
        else:
            self._goal = int(self.np_random.integers(2))
        self._pos = 0
        self._t = 0
        self._done = False
        return self._obs_cue[self._goal].copy(), {"goal": self._goal}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step. Raises RuntimeError if called after the episode ended."""
        if self._done:
            raise RuntimeError("TMazeEnv.step called after the episode ended; call reset()")
        a = int(action)
        if not 0 <= a < 4:
            raise ValueError(f"action must be in [0, 4), got {action!r}")
        self._t += 1
        info: dict[str, Any] = {}
        terminated = False
        reward = REWARD_STEP
        if a == RIGHT:
            if self._pos < self.corridor_len - 1:
                self._pos += 1
        elif a == LEFT:
            if self._pos > 0:
                self._pos -= 1
        elif self._pos == self.corridor_len - 1:
            terminated = True
            success = a == self._goal
            reward = REWARD_CORRECT if success else REWARD_WRONG
            info["success"] = success
        truncated = not terminated and self._t >= self.max_steps
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        """``ansi``: the corridor as text, ``A`` for the agent, ``^``/``v`` for the goal arm.

        ``rgb_array``: :func:`render_rgb` of the current position (uint8 ``[H, W, 3]``).
        """
        if self.render_mode == "rgb_array":
            return render_rgb(self.corridor_len, self._pos, self._goal)
        if self.render_mode != "ansi":
            return None
        cells = ["."] * self.corridor_len
        cells[self._pos] = "A"
        return "".join(cells) + ("^" if self._goal == UP else "v")


def optimal_return(corridor_len: int) -> float:
    """The best episode return in a T-Maze of ``corridor_len`` cells (no time-limit cut)."""
    return REWARD_CORRECT + REWARD_STEP * (corridor_len - 1)


# Colours of render_rgb (RGB).
_WALL = (40, 40, 40)
_FLOOR = (200, 200, 200)
_AGENT = (30, 90, 230)
_GOAL = (40, 180, 60)
_WRONG = (200, 60, 50)
_MAX_WIDTH = 960


def render_rgb(corridor_len: int, pos: int, goal: int) -> np.ndarray:
    """A picture of the maze: the corridor as a row of grey cells, the two arms above and below
    the junction (green: the goal arm, red: the other), the agent as a blue cell.

    Returns uint8 ``[3 * c, corridor_len * c, 3]``, cells of ``c`` pixels (16, fewer for long
    corridors so the width stays <= 960).
    """
    cell = max(2, min(16, _MAX_WIDTH // corridor_len))
    image = np.empty((3 * cell, corridor_len * cell, 3), np.uint8)
    image[:] = _WALL
    image[cell : 2 * cell] = _FLOOR
    junction = slice((corridor_len - 1) * cell, corridor_len * cell)
    up, down = (_GOAL, _WRONG) if goal == UP else (_WRONG, _GOAL)
    image[:cell, junction] = up
    image[2 * cell :, junction] = down
    image[cell : 2 * cell, pos * cell : (pos + 1) * cell] = _AGENT
    # a one-pixel grid so that single steps are visible
    image[cell : 2 * cell, ::cell] = _WALL
    return image
