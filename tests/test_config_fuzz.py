"""Property-based: random dotted keys, types and values thrown at the config loader and at
``memrl train`` fail, when they fail, with a ConfigError / exit code 2 naming the dotted key,
never with a traceback. Plus the YAML trap ``{memory_len:64}`` (one key, not a mapping)."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from memrl.config import ConfigError, TrainConfig, load_config  # noqa: E402

CONFIG = "tmaze/gru"
# Keep the env cheap and every valid draw tiny (the CLI builds the env once).
BASE = ["task.corridor_len=4", "stop.iterations=1"]


def _schema_keys() -> list[str]:
    from pydantic import BaseModel

    keys: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = prefix + (field.alias or name)
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                keys.append(key)
                walk(annotation, key + ".")
            else:
                keys.append(key)

    walk(TrainConfig, "")
    return keys + [
        "task.corridor_len",
        "task.num_distractors",
        "task.max_steps",
        "model.core_kwargs.hidden_size",
        "model.core_kwargs.num_layers",
        "model.network.encoder_hiddens",
        "model.network.activation",
    ]


KEYS = _schema_keys()
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_:0123456789", min_size=1, max_size=12)
dotted_keys = st.one_of(
    st.sampled_from(KEYS),
    st.builds(lambda k, extra: f"{k}.{extra}", st.sampled_from(KEYS), segment),  # too deep
    st.builds(lambda k, s: k.rsplit(".", 1)[0] + "." + s, st.sampled_from(KEYS), segment),  # typo
    st.lists(segment, min_size=1, max_size=3).map(".".join),  # anything
)
plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.one_of(
    plain,
    st.lists(plain, max_size=3),
    st.dictionaries(st.one_of(segment, st.integers(0, 3)), plain, max_size=3),
)
raw_values = st.one_of(
    values.map(lambda v: json.dumps(v, default=str)),  # what a person would type, as YAML
    st.sampled_from(["{memory_len:64}", "{a: b: c}", "2020-13-45", "[1, 2", "!!python/object:x"]),
    st.text(max_size=16),
)


def _named(message: str, key: str) -> bool:
    """The message names the dotted key or one of its leading parts (the unknown section)."""
    parts = key.strip().split(".")
    return any(".".join(parts[:i]) in message for i in range(1, len(parts) + 1))


def _check_error(err: ConfigError, item: str) -> None:
    key = item.partition("=")[0]
    message = str(err)
    assert message.strip(), item
    assert _named(message, key), (item, message)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=dotted_keys, raw=raw_values)
def test_config_loader_fails_only_with_a_config_error_naming_the_key(key, raw):
    item = f"{key}={raw}"
    try:
        load_config(CONFIG, [*BASE, item])
    except ConfigError as err:
        _check_error(err, item)


class _Started(Exception):
    """train() got past the config and the env check: the point where Ray would start."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=dotted_keys, raw=raw_values)
def test_cli_fails_with_exit_code_2_naming_the_key(key, raw):
    from unittest import mock

    import memrl.train
    from memrl.cli import main

    item = f"{key}={raw}"

    def start(cfg):
        raise _Started

    out_lines: list[str] = []
    with (
        mock.patch.object(memrl.train, "init_ray", start),
        mock.patch("rich.console.Console.print", lambda self, *a, **k: out_lines.append(a[0])),
    ):
        try:
            code = main(["train", CONFIG, *BASE, item])
        except _Started:
            return
    assert code == 2, (item, out_lines)
    text = "\n".join(str(x) for x in out_lines)
    assert text.startswith("[red]memrl train: ") and "Traceback" not in text, text
    assert _named(text, item.partition("=")[0]), (item, text)


@pytest.mark.parametrize(
    ("override", "key", "fix"),
    [
        (
            "model.core_kwargs={hidden_size:64}",
            "model.core_kwargs.hidden_size:64",
            "hidden_size: 64",
        ),
        ("ppo={lr:0.001}", "ppo.lr:0.001", "lr: 0.001"),
        ("model.network={activation:tanh}", "model.network.activation:tanh", "activation: tanh"),
    ],
)
def test_flow_mapping_without_space_says_how_to_write_it(override, key, fix):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIG, [*BASE, override])
    message = str(err.value)
    assert key in message and f"write `{fix}`" in message and "did you mean" not in message


def test_the_same_trap_inside_a_yaml_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "base: tmaze/gru\nmodel:\n  core: gtrxl\n  core_kwargs: {d_model: 16, memory_len:8}\n"
    )
    with pytest.raises(ConfigError, match=r"write `memory_len: 8`"):
        load_config(config, BASE)
