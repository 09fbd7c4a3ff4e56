"""Q-Transformer as ``memrl train`` drives it: an algorithm object for :func:`memrl.loop.run_loop`.

Offline training needs no env runners and no Ray: the learner samples sequences from the
dataset at ``data.path`` in this process (on a GPU when the resolved resources give the learner
one). So instead of an RLlib ``Algorithm`` this is a small object with what the loop and
:mod:`memrl.checkpoints` use: ``train()`` (one iteration of ``qtransformer.updates_per_iteration``
updates, a result dict in RLlib's nesting), ``save_to_path``/``restore_from_path`` and
``stop()``. :func:`build_qtransformer_config` returns its builder, mirroring RLlib's
``AlgorithmConfig.build_algo()``.

A saved ``algorithm/`` folder holds ``learner.pt`` (online net, target net, AdamW state, update
count; tensors only, loaded with ``weights_only=True``) and ``meta.json`` (the dataset's spaces,
the bins, the iteration and dataset-step counters, the sequence sampler's generator state), so a
restored run continues exactly where the saved one was.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from memrl.config import ConfigError, TrainConfig
from memrl.data import DatasetError, load_episodes
from memrl.data.spaces import deserialize_space, serialize_space
from memrl.rllib.qtransformer.discretise import ActionBins
from memrl.rllib.qtransformer.network import QTransformerNetwork
from memrl.rllib.qtransformer.policy import play_greedy
from memrl.rllib.qtransformer.sequences import SequenceSampler
from memrl.rllib.qtransformer.update import QTransformerUpdate

log = logging.getLogger("memrl.qtransformer")

LEARNER_FILE = "learner.pt"
META_FILE = "meta.json"
META_FORMAT = 1
# Greedy evaluations during training replay the same env seeds each time (comparable numbers).
EVAL_SEED_OFFSET = 10_000


def _make_env_fn(cfg: TrainConfig) -> Any:
    from memrl.envs import make_env, resolve_env_id

    env_id = resolve_env_id(cfg.task.env_name)
    return lambda: make_env(env_id, **cfg.task.env_kwargs)


def build_network(cfg: TrainConfig, obs_space: gym.Space, bins: ActionBins) -> QTransformerNetwork:
    """The network of ``cfg`` (core and encoder from ``model``, head from ``qtransformer``)."""
    return QTransformerNetwork(
        obs_space,
        bins.num_dims,
        bins.num_bins,
        cfg.model.core,
        dict(cfg.model.core_kwargs),
        cfg.model.network,
        cfg.qtransformer,
    )


def check_spaces(cfg: TrainConfig, obs_space: gym.Space, action_space: gym.Space) -> None:
    """Raise ConfigError unless ``task``'s env has the dataset's (or checkpoint's) spaces."""
    env = _make_env_fn(cfg)()
    try:
        ours = (env.observation_space, env.action_space)
    finally:
        env.close()
    if ours != (obs_space, action_space):
        raise ConfigError(
            f"task.env_name: env {cfg.task.env_name!r} has spaces {ours[0]} / {ours[1]}, the "
            f"dataset at data.path {cfg.data.path} has {obs_space} / {action_space}"
        )


class QTransformerAlgorithm:
    """Trains ``cfg``'s Q-Transformer on ``cfg.data.path`` (see the module docstring).

    Raises ConfigError naming ``data.path`` for a missing or unreadable dataset or one whose
    actions cannot be discretised, and ``task.env_name`` for an env with other spaces.
    """

    def __init__(self, cfg: TrainConfig, device: str = "cpu") -> None:
        self.cfg, self.hp, self.device = cfg, cfg.qtransformer, torch.device(device)
        hp = self.hp
        try:
            info, episodes = load_episodes(cfg.data.path)
        except (DatasetError, FileNotFoundError, OSError) as err:
            raise ConfigError(f"data.path: cannot read the dataset: {err}") from err
        try:
            self.bins = ActionBins(info.action_space, hp.bins)
        except ValueError as err:
            raise ConfigError(f"data.path: {cfg.data.path}: {err}") from err
        self.observation_space, self.action_space = info.observation_space, info.action_space
        check_spaces(cfg, info.observation_space, info.action_space)
        seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        self.seed = seed
        torch.manual_seed(seed)
        self.sampler = SequenceSampler(
            episodes, self.bins, seq_len=hp.seq_len, burn_in=hp.burn_in, n_step=hp.n_step,
            gamma=hp.gamma, seed=seed,
        )  # fmt: skip
        network = build_network(cfg, info.observation_space, self.bins).to(self.device)
        self.update = QTransformerUpdate(network, hp)
        self.iteration = 0
        self.trained_steps = 0
        log.info(
            "qtransformer: %d episodes, %d steps from %s; %d dims x %d bins on %s",
            len(episodes), self.sampler.num_steps, cfg.data.path, self.bins.num_dims,
            self.bins.num_bins, self.device,
        )  # fmt: skip

    @property
    def network(self) -> QTransformerNetwork:
        return self.update.online

    def train(self) -> dict[str, Any]:
        """One iteration: ``updates_per_iteration`` updates, then a greedy evaluation every
        ``eval_every`` iterations. The result nests like RLlib's: ``learners/default_policy/*``
        (means over the iteration's updates; ``q_loss`` is the whole loss),
        ``learners/__all_modules__/num_env_steps_trained`` (dataset steps this iteration) and,
        after an evaluation, ``env_runners/episode_return_mean`` and ``episode_len_mean``."""
        hp = self.hp
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for _ in range(hp.updates_per_iteration):
            batch = self.sampler.sample(hp.batch_size).to(self.device)
            for key, value in self.update.update(batch).items():
                sums[key] = sums.get(key, 0.0) + value
        learn_s = time.perf_counter() - t0
        steps = hp.updates_per_iteration * hp.batch_size * self.sampler.length
        self.iteration += 1
        self.trained_steps += steps
        means = {k: v / hp.updates_per_iteration for k, v in sums.items()}
        means["q_loss"] = means["loss"]
        result: dict[str, Any] = {
            "training_iteration": self.iteration,
            "learners": {
                "default_policy": means,
                "__all_modules__": {
                    "num_env_steps_trained": steps,
                    "num_env_steps_trained_lifetime": self.trained_steps,
                    "learner_timesteps_per_s": steps / learn_s if learn_s > 0 else 0.0,
                },
            },
        }
        if hp.eval_every and self.iteration % hp.eval_every == 0:
            played = play_greedy(
                self.network, self.bins, _make_env_fn(self.cfg), hp.eval_episodes,
                seed=self.seed + EVAL_SEED_OFFSET,
            )  # fmt: skip
            result["env_runners"] = {
                "episode_return_mean": float(np.mean([e.episode_return for e in played])),
                "episode_len_mean": float(np.mean([e.length for e in played])),
                "num_episodes": len(played),
            }
        result["time_this_iter_s"] = time.perf_counter() - t0
        return result

    def save_to_path(self, path: str | Path) -> str:
        """Write ``learner.pt`` and ``meta.json`` into the folder ``path`` (created)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.update.state_dict(), folder / LEARNER_FILE)
        meta = {
            "format": META_FORMAT,
            "observation_space": serialize_space(self.observation_space),
            "action_space": serialize_space(self.action_space),
            "bins": self.bins.num_bins,
            "iteration": self.iteration,
            "trained_steps": self.trained_steps,
            "seed": self.seed,
            "sampler_rng": self.sampler.state(),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1))
        return str(folder)

    def restore_from_path(self, path: str | Path, **_: Any) -> None:
        """Load what :meth:`save_to_path` wrote. Raises ValueError for a checkpoint of another
        dataset's spaces or bins, or another format."""
        folder = Path(path)
        meta = read_meta(folder)
        saved = (meta["observation_space"], meta["action_space"], meta["bins"])
        ours = (
            serialize_space(self.observation_space),
            serialize_space(self.action_space),
            self.bins.num_bins,
        )
        if saved != ours:
            raise ValueError(
                f"{folder}: saved for spaces/bins {saved}, this run's dataset has {ours}"
            )
        state = torch.load(folder / LEARNER_FILE, map_location=self.device, weights_only=True)
        self.update.load_state_dict(state)
        self.sampler.set_state(meta["sampler_rng"])
        self.iteration, self.trained_steps = int(meta["iteration"]), int(meta["trained_steps"])
        self.seed = int(meta["seed"])

    def stop(self) -> None:
        """Nothing to release (no actors, no files held open)."""


def read_meta(folder: Path) -> dict[str, Any]:
    """The ``meta.json`` of a saved algorithm folder. Raises ValueError for another format."""
    meta = json.loads((folder / META_FILE).read_text())
    if meta.get("format") != META_FORMAT:
        raise ValueError(
            f"{folder / META_FILE}: qtransformer checkpoint format {meta.get('format')!r}, "
            f"this memrl reads {META_FORMAT}"
        )
    return meta


def load_policy(
    cfg: TrainConfig, algorithm_dir: Path, device: str = "cpu"
) -> tuple[QTransformerNetwork, ActionBins]:
    """The trained (online) network and its bins from a saved algorithm folder, without the
    dataset: spaces and bins come from its ``meta.json``. Raises ConfigError when ``task``'s env
    has other spaces, ValueError for another format."""
    meta = read_meta(algorithm_dir)
    obs_space = deserialize_space(meta["observation_space"], str(algorithm_dir / META_FILE))
    action_space = deserialize_space(meta["action_space"], str(algorithm_dir / META_FILE))
    check_spaces(cfg, obs_space, action_space)
    bins = ActionBins(action_space, int(meta["bins"]))
    network = build_network(cfg, obs_space, bins).to(device)
    state = torch.load(algorithm_dir / LEARNER_FILE, map_location=device, weights_only=True)
    network.load_state_dict(state["online"])
    network.eval()
    return network, bins


@dataclass(frozen=True)
class QTransformerAlgorithmConfig:
    """What :func:`memrl.session.build_algorithm` builds: ``build_algo()`` makes the algorithm."""

    cfg: TrainConfig
    device: str

    def build_algo(self) -> QTransformerAlgorithm:
        return QTransformerAlgorithm(self.cfg, self.device)

    def resource_bundles(self) -> list[dict[str, float]]:
        """What a Tune trial reserves (RLlib configs answer ``default_resource_request``): the
        one learner in the trial's process, one CPU and the GPU it trains on, if any."""
        return [{"CPU": 1.0, **({"GPU": 1.0} if self.device == "cuda" else {})}]


def build_qtransformer_config(cfg: TrainConfig, resources: Any) -> QTransformerAlgorithmConfig:
    """The builder of ``cfg``'s algorithm on ``resources`` (a ResolvedResources): one learner in
    this process, on CUDA when ``num_gpus_per_learner > 0`` and CUDA is available."""
    gpu = float(getattr(resources, "num_gpus_per_learner", 0.0)) > 0
    device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
    if getattr(resources, "num_learners", 0) > 1:
        log.warning("qtransformer trains with one learner in this process; num_learners ignored")
    return QTransformerAlgorithmConfig(cfg, device)
