"""The one list of overrides that shrinks the shipped tmaze/gru config to a seconds-long run.

Tests add what they vary (env runners, checkpoint cadence, batch) after it; later overrides win.
"""

TINY_RUN: list[str] = [
    "task.corridor_len=4",
    "model.core_kwargs.hidden_size=16",
    "model.max_seq_len=16",
    "model.network.encoder_hiddens=[16]",
    "ppo.train_batch_size_per_learner=128",
    "ppo.minibatch_size=64",
    "ppo.num_epochs=1",
    "resources.num_envs_per_env_runner=2",
]
