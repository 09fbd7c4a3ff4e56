"""memrl: distributed actor-learner RL for agents with memory."""

__version__ = "0.1.0"
