"""The config layer: every shipped config validates; bad input names the key and valid values.

No Ray here: these tests only load YAML and check it.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import yaml

import memrl.envs  # noqa: F401  (registers the ids the configs name)
from memrl.config import (
    ConfigError,
    ResourcesConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    list_configs,
    load_config,
    resolve_config_path,
)
from memrl.models import core_class
from memrl.resources import resolve_resources

SHIPPED = list_configs()


def _registered(env_name: str) -> bool:
    return env_name in gym.registry or f"memrl/{env_name}" in gym.registry


def test_the_required_configs_ship():
    required = {
        *(
            f"tmaze/{c}"
            for c in [
                "arelit",
                "relit",
                "gtrxl128",
                "gtrxl256",
                "trxl",
                "lstm",
                "gru",
                "brt",
                "local_xl",
            ]
        ),
        *(f"mysterypath/{c}" for c in ["arelit4", "gtrxl32", "gtrxl64", "gtrxl128", "gru"]),
        *(f"memorymaze/{c}" for c in ["gtrxl", "arelit", "gru"]),
        *(f"popgym/{c}" for c in ["gru", "gtrxl", "arelit"]),
    }
    assert required <= set(SHIPPED), sorted(required - set(SHIPPED))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_validates(name):
    # The schema, the core and its kwargs, and the network are always checked.
    cfg = load_config(name, check_env=False)
    assert cfg.name and cfg.seed is not None and cfg.output_dir
    stop = cfg.stop
    assert stop.iterations or stop.timesteps or stop.time_s
    assert set(cfg.model.core_kwargs) <= set(core_class(cfg.model.core).hyperparameters())
    # Each file says where its numbers come from.
    text = resolve_config_path(name).read_text()
    assert text.lstrip().startswith("#"), f"{name} has no source comment"
    # The env id and kwargs too, where the env is registered on this machine.
    if not _registered(cfg.task.env_name):
        pytest.skip(f"env {cfg.task.env_name} is not registered (its package is not installed)")
    load_config(name)


def test_shipped_names_are_unique():
    names = [load_config(n, check_env=False).name for n in SHIPPED]
    assert len(names) == len(set(names))


def test_seed_project_command_styles():
    cfg = load_config("tmaze/arelit", ["task.corridor_len=160"])
    assert cfg.task.env_kwargs["corridor_len"] == 160
    assert cfg.model.core == "arelit"
    cfg = load_config("mysterypath/gtrxl128", ["task.env_name=MysteryPath-Grid-Easy-v0"])
    assert cfg.task.env_name == "MysteryPath-Grid-Easy-v0"
    assert cfg.model.core_kwargs["memory_len"] == 128
    cfg = load_config("tmaze/gru", ["stop.iterations=2"])
    assert cfg.stop.iterations == 2


def test_overrides_are_yaml_typed():
    cfg = load_config(
        "tmaze/gru",
        [
            "ppo.lr=1e-3",
            "ppo.grad_clip=null",
            "model.network.encoder_hiddens=[32, 32]",
            "seed=7",
            "name=other",
            "resources.num_env_runners=0",
        ],
    )
    assert cfg.ppo.lr == pytest.approx(1e-3)
    assert cfg.ppo.grad_clip is None
    assert cfg.model.network.encoder_hiddens == (32, 32)
    assert cfg.seed == 7 and cfg.name == "other"
    assert cfg.resources.num_env_runners == 0


def test_override_of_a_value_as_a_section_is_an_error():
    with pytest.raises(ConfigError, match=r"seed is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["no_equals_sign"])


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [
        ("ppo.lamda=0.9", "ppo.lamda", "lambda"),
        ("checkpont={every: 1}", "checkpont", "checkpoint"),
        ("stop.iteration=3", "stop.iteration", "iterations"),
        (
            "resources.num_gpus_per_lerner=1",
            "resources.num_gpus_per_lerner",
            "num_gpus_per_learner",
        ),
        ("model.core_kwargs.hiden_size=3", "model.core_kwargs.hiden_size", "hidden_size"),
        ("model.network.encoder_hidens=[3]", "model.network.encoder_hidens", "encoder_hiddens"),
        ("task.corridor_le=3", "task.corridor_le", "corridor_len"),
    ],
)
def test_unknown_key_names_the_key_and_the_valid_ones(override, key, valid):
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", [override])
    message = str(err.value)
    assert f"{key}:" in message
    assert f"did you mean '{valid}'" in message


def test_all_errors_are_reported_together():
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", ["ppo.lamda=1", "model.core_kwargs.hiden_size=3", "bogus=1"])
    message = str(err.value)
    for key in ("ppo.lamda", "model.core_kwargs.hiden_size", "bogus"):
        assert f"{key}:" in message


def test_unknown_core_lists_the_cores():
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", ["model.core=gtrxll", "model.core_kwargs={}"])
    message = str(err.value)
    assert "model.core: unknown core 'gtrxll'" in message
    assert "did you mean 'gtrxl'" in message
    assert "arelit" in message and "mlp" in message


def test_unknown_env_lists_close_ids():
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", ["task.env_name=TMaz-v0"])
    message = str(err.value)
    assert "task.env_name: unknown env 'TMaz-v0'" in message
    assert "memrl/TMaze-v0" in message


def test_short_env_name_resolves_with_the_memrl_prefix():
    cfg = load_config("tmaze/gru", ["task.env_name=TMaze-v0"])
    from memrl.envs import resolve_env_id

    assert resolve_env_id(cfg.task.env_name) == "memrl/TMaze-v0"


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("stop.iterations=many", "stop.iterations", "valid integer"),
        ("ppo.gamma=1.5", "ppo.gamma", "less than or equal to 1"),
        ("algo=r2d3", "algo", "'ppo'"),
        ("logging.level=LOUD", "logging.level", "'INFO'"),
        ("resources.num_env_runners=some", "resources.num_env_runners", "'auto'"),
        ("model.network.activation=swish", "model.network.activation", "relu"),
    ],
)
def test_wrong_types_name_the_key_and_what_is_allowed(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", [override])
    message = str(err.value)
    assert f"{key}:" in message and words in message


def test_ppo_schedules_go_to_rllib_as_lists():
    cfg = load_config(
        "tmaze/gru",
        ["ppo.lr=[[0, 1.0e-4], [40000, 1.0e-3]]", "ppo.entropy_coeff=[[0, 0.03], [1000, 0.0]]"],
    )
    kwargs = cfg.ppo.training_kwargs()
    assert kwargs["lr"] == [[0, 1e-4], [40000, 1e-3]]
    assert kwargs["entropy_coeff"] == [[0, 0.03], [1000, 0.0]]
    assert load_config("tmaze/gru", ["ppo.lr=0.002"]).ppo.training_kwargs()["lr"] == 0.002


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("ppo.lr=[[10, 1.0e-3]]", "ppo.lr: Value error, lr: a schedule starts at env step 0"),
        ("ppo.lr=[[0, 1.0e-3], [0, 1.0e-4]]", "ppo.lr: Value error, lr: schedule env steps must"),
        ("ppo.lr=[[0, 0.0]]", "ppo.lr: Value error, lr must be > 0"),
        ("ppo.lr=.nan", "ppo.lr: Value error, lr must be > 0"),
        (
            "ppo.entropy_coeff=[[0, -0.1]]",
            "ppo.entropy_coeff: Value error, entropy_coeff must be >=",
        ),
        ("ppo.entropy_coeff=[]", "entropy_coeff: a schedule needs at least one"),
    ],
)
def test_bad_ppo_schedules_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gru", [override])
    assert words in str(err.value)


def test_minibatch_larger_than_batch_is_rejected():
    with pytest.raises(ConfigError, match="minibatch_size"):
        load_config("tmaze/gru", ["ppo.minibatch_size=4096", "ppo.train_batch_size_per_learner=64"])


def test_a_run_without_any_stop_condition_is_rejected():
    with pytest.raises(ConfigError, match="at least one of stop"):
        load_config("tmaze/gru", ["stop.timesteps=null"])


def test_a_return_target_alone_is_no_stop_condition():
    with pytest.raises(ConfigError, match="episode_return_mean needs one of them"):
        load_config(
            "tmaze/gru", ["stop.timesteps=null", "stop.time_s=null", "stop.episode_return_mean=3"]
        )


def test_stop_reason_return_target_is_checked_first_and_ignores_nan():
    from memrl.loop import stop_reason

    cfg = load_config("tmaze/gru", ["stop.timesteps=1000", "stop.episode_return_mean=3.5"])
    assert stop_reason(cfg, 1, 10, 1.0, [float("nan")]) is None  # no episode ended yet
    assert stop_reason(cfg, 1, 10, 1.0, []) is None
    assert stop_reason(cfg, 1, 10, 1.0, [3.49]) is None
    assert "episode_return_mean=3.5 reached (3.500)" in stop_reason(cfg, 1, 10, 1.0, [0.0, 3.5])
    assert "timesteps=1000" in stop_reason(cfg, 1, 1000, 1.0, [0.0])
    plain = load_config("tmaze/gru", ["stop.timesteps=1000"])
    assert stop_reason(plain, 1, 10, 1.0, [1e9]) is None  # no target: the return never stops it


def test_return_target_must_hold_for_episode_return_iterations_in_a_row():
    from memrl.loop import stop_reason

    cfg = load_config(
        "tmaze/gru",
        ["stop.timesteps=1000", "stop.episode_return_mean=3", "stop.episode_return_iterations=3"],
    )
    assert stop_reason(cfg, 2, 10, 1.0, [3.1, 3.2]) is None  # only two iterations so far
    assert stop_reason(cfg, 4, 10, 1.0, [3.1, 3.2, 2.9, 3.3]) is None  # the streak broke
    assert stop_reason(cfg, 4, 10, 1.0, [3.1, float("nan"), 3.2, 3.3]) is None  # NaN breaks it
    reason = stop_reason(cfg, 4, 10, 1.0, [0.0, 3.0, 3.2, 3.3])
    assert "episode_return_mean=3.0 reached (3.300) for 3 iterations" in reason
    with pytest.raises(ConfigError, match="episode_return_iterations"):
        load_config("tmaze/gru", ["stop.timesteps=1000", "stop.episode_return_iterations=0"])


def test_unknown_config_name_suggests_close_ones():
    with pytest.raises(ConfigError) as err:
        load_config("tmaze/gruu")
    assert "tmaze/gru" in str(err.value)


def test_inheritance_merges_mappings_and_child_wins(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "task": {"env_name": "memrl/TMaze-v0", "corridor_len": 9, "num_distractors": 2},
                "ppo": {"lr": 0.1, "gamma": 0.5},
                "stop": {"iterations": 5},
            }
        )
    )
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\nname: kid\ntask: {corridor_len: 4}\nppo: {lr: 0.2}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.name == "kid" and cfg.seed == 3
    assert cfg.task.env_kwargs == {"corridor_len": 4, "num_distractors": 2}
    assert cfg.ppo.lr == pytest.approx(0.2) and cfg.ppo.gamma == pytest.approx(0.5)


def test_shipped_config_inherits_its_family_base():
    gtrxl128 = load_config("tmaze/gtrxl128", check_env=False)
    gtrxl256 = load_config("tmaze/gtrxl256", check_env=False)
    assert gtrxl256.model.core_kwargs["memory_len"] == 256
    # only memory_len differs in the core; the rest comes from gtrxl128
    assert {**gtrxl128.model.core_kwargs, "memory_len": 256} == gtrxl256.model.core_kwargs
    assert gtrxl256.task.env_kwargs == gtrxl128.task.env_kwargs


def test_inheritance_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config("tmaze/arelit", ["task.corridor_len=160", f"output_dir={tmp_path}"])
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_yaml_dict())))
    assert again == cfg
    assert again.run_dir == tmp_path / "runs" / "tmaze-arelit"
    assert again.checkpoint_dir.is_absolute()


def test_relative_output_dir_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config("tmaze/gru", ["output_dir=rel"])
    assert cfg.checkpoint_dir == tmp_path / "rel" / "checkpoints" / "tmaze-gru"
    assert cfg.to_yaml_dict()["output_dir"] == str(tmp_path / "rel")


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected"),
    [
        (2, 0, dict(num_env_runners=1, num_learners=0, num_gpus_per_learner=0.0)),
        (1, 0, dict(num_env_runners=0, num_learners=0, num_gpus_per_learner=0.0)),
        (16, 1, dict(num_env_runners=15, num_learners=0, num_gpus_per_learner=1.0)),
        (32, 4, dict(num_env_runners=27, num_learners=4, num_gpus_per_learner=1.0)),
    ],
)
def test_auto_resources_follow_the_cluster(cpus, gpus, expected):
    got = resolve_resources(ResourcesConfig(), cpus=cpus, gpus=gpus)
    assert got.model_dump(exclude={"num_envs_per_env_runner"}) == expected


def test_explicit_resources_are_kept():
    res = ResourcesConfig(num_env_runners=3, num_learners=2, num_gpus_per_learner=0.5)
    got = resolve_resources(res, cpus=64, gpus=8)
    assert (got.num_env_runners, got.num_learners, got.num_gpus_per_learner) == (3, 2, 0.5)


def test_every_field_has_a_description():
    from pydantic import BaseModel

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")

    walk(TrainConfig, "")


# --- qtransformer (issue 11): the qtransformer and data sections ---------------------------------
def test_qtransformer_needs_data_path():
    with pytest.raises(ConfigError) as err:
        load_config("qtransformer/pointgoal_gru", ["data.path=null"])
    message = str(err.value)
    assert "data.path: required for algo 'qtransformer'" in message
    assert "memrl data collect" in message and "(top level)" not in message
    # Other algorithms do not read a dataset.
    assert load_config("tmaze/gru").data.path is None


@pytest.mark.parametrize(
    ("override", "key", "words"),
    [
        ("qtransformer.binz=8", "qtransformer.binz", "did you mean 'bins'"),
        ("qtransformer.bins=1", "qtransformer.bins", "greater than or equal to 2"),
        ("qtransformer.target_ema=1.0", "qtransformer.target_ema", "less than 1"),
        ("data.paht=x", "data.paht", "valid: path"),
    ],
)
def test_qtransformer_bad_keys_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config("qtransformer/pointgoal_gru", [override])
    message = str(err.value)
    assert f"{key}:" in message and words in message


def test_qtransformer_section_sets_the_hyperparameters(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        "qtransformer/pointgoal_gru", ["qtransformer.bins=8", "qtransformer.head_hiddens=[4, 4]",
                                       "data.path=ds"],
    )  # fmt: skip
    assert cfg.algo == "qtransformer"
    assert cfg.qtransformer.bins == 8 and cfg.qtransformer.head_hiddens == (4, 4)
    # data.path is made absolute in the resolved config (checkpoints run from anywhere).
    data = cfg.to_yaml_dict()
    assert data["data"]["path"] == str(tmp_path / "ds")
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(data)))
    assert again.qtransformer == cfg.qtransformer and again.data.path == str(tmp_path / "ds")
