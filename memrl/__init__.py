"""memrl: distributed actor-learner RL for agents with memory."""

import os

# RLlib imports dm_control at import time; without a GL backend chosen, dm_control tries GLFW,
# which warns on every headless machine. EGL is what Memory Maze renders with here anyway.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
