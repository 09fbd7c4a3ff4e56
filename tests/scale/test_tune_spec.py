"""``memrl tune`` search specs without Ray running: parsing, drawing trials, validation, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from memrl.tune import (
    TuneSpecError,
    draw_variants,
    load_tune_spec,
    main,
    parse_space,
    plan,
    short_names,
    trial_config,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "configs" / "tune" / "tmaze.yaml"


def write_spec(tmp_path: Path, **fields) -> Path:
    data = {"name": "t", "base": "demo/gru", "storage_path": str(tmp_path / "store"), **fields}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"normal": [0, 1]}, "a space must be one of"),
        ({"choice": []}, "non-empty list"),
        ({"grid_search": 3}, "non-empty list"),
        ({"uniform": [1.0]}, "[low, high]"),
        ({"uniform": [2.0, 1.0]}, "low < high"),
        ({"loguniform": [0.0, 0.1]}, "0 < low"),
        ({"randint": [1.5, 4]}, "integers"),
        ({"uniform": ["a", "b"]}, "two numbers"),
        (0.001, "a space must be one of"),
        ({"choice": [1], "uniform": [0, 1]}, "a space must be one of"),
    ],
)
def test_bad_space_names_its_key(spec, message):
    with pytest.raises(TuneSpecError, match="ppo.lr") as err:
        parse_space("search.ppo.lr", spec)
    assert message in str(err.value)


def test_spaces_sample_inside_their_bounds():
    import numpy as np

    rng = np.random.RandomState(0)
    lr = parse_space("k", {"loguniform": [1e-4, 1e-2]}).sample(size=200, random_state=rng)
    assert all(1e-4 <= v <= 1e-2 for v in lr)
    # log-uniform: about half the draws fall below the geometric mean
    assert 0.35 < np.mean(np.array(lr) < 1e-3) < 0.65
    ints = parse_space("k", {"randint": [2, 5]}).sample(size=200, random_state=rng)
    assert set(ints) == {2, 3, 4}
    assert parse_space("k", {"grid_search": [1, 2]}) == {"grid_search": [1, 2]}


def test_spec_file_unknown_key_and_core_clash(tmp_path):
    with pytest.raises(TuneSpecError, match="num_sample: unknown key"):
        load_tune_spec(write_spec(tmp_path, num_sample=2))
    with pytest.raises(TuneSpecError, match="scheduler.type"):
        load_tune_spec(write_spec(tmp_path, scheduler={"type": "hyperband"}))
    clash = write_spec(
        tmp_path,
        search={"model.core_kwargs.hidden_size": {"choice": [8]}},
        cores={"gru": {"core_kwargs": {"hidden_size": 8}}},
    )
    with pytest.raises(TuneSpecError, match="search.model.core_kwargs.hidden_size"):
        load_tune_spec(clash)
    with pytest.raises(TuneSpecError, match="not found"):
        load_tune_spec(tmp_path / "missing.yaml")


def test_command_line_overrides_address_sections(tmp_path):
    spec = load_tune_spec(
        write_spec(tmp_path, overrides={"stop.iterations": 5}),
        [
            "overrides.stop.iterations=2",
            "search.ppo.lr={choice: [0.001, 0.002]}",
            "scheduler.type=asha",
            "scheduler.grace_period=3",
            "num_samples=2",
        ],
    )
    assert spec.overrides == {"stop.iterations": 2}
    assert spec.search == {"ppo.lr": {"choice": [0.001, 0.002]}}
    assert (spec.scheduler.type, spec.scheduler.grace_period, spec.num_samples) == ("asha", 3, 2)
    assert spec.experiment_path == (tmp_path / "store" / "t").resolve()


def test_grid_times_samples_and_per_core_kwargs_stay_valid(tmp_path):
    spec = load_tune_spec(
        write_spec(
            tmp_path,
            search={"ppo.lr": {"loguniform": [1e-4, 1e-2]}},
            cores={
                "gru": {"core_kwargs": {"hidden_size": 8, "num_layers": 1}},
                "gtrxl": {
                    "core_kwargs": {"d_model": 8, "num_layers": 1, "num_heads": 1, "d_ff": 16},
                    "search": {"model.core_kwargs.memory_len": {"grid_search": [2, 4, 8]}},
                },
            },
            num_samples=3,
            overrides={"stop.iterations": 1},
        )
    )
    base, variants = plan(spec)
    assert len(variants) == 3 * (1 + 3)  # num_samples x (gru + 3 gtrxl memory lengths)
    assert [v.index for v in variants] == list(range(len(variants)))
    by_core: dict[str, list] = {"gru": [], "gtrxl": []}
    for v in variants:
        cfg = trial_config(base, v)
        by_core[cfg.model.core].append(cfg)
        assert cfg.ppo.lr == v.params["ppo.lr"] and 1e-4 <= cfg.ppo.lr <= 1e-2
        assert cfg.stop.iterations == 1
    assert all(c.model.core_kwargs == {"hidden_size": 8, "num_layers": 1} for c in by_core["gru"])
    lens = sorted(c.model.core_kwargs["memory_len"] for c in by_core["gtrxl"])
    assert lens == [2, 2, 2, 4, 4, 4, 8, 8, 8]
    assert all("hidden_size" not in c.model.core_kwargs for c in by_core["gtrxl"])
    # the random draws differ between samples, and a seed reproduces them
    lrs = [v.params["ppo.lr"] for v in variants]
    assert len({round(x, 12) for x in lrs}) > 3
    assert [v.params["ppo.lr"] for v in draw_variants(spec)] == lrs
    other = draw_variants(spec.model_copy(update={"seed": 1}))
    assert [v.params["ppo.lr"] for v in other] != lrs


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        # a key memrl does not know
        ({"search": {"ppo.lrr": {"choice": [0.001]}}}, "ppo.lrr"),
        # a value memrl rejects (minibatch larger than the batch) in one of two draws
        ({"search": {"ppo.minibatch_size": {"grid_search": [64, 4096]}}}, "ppo"),
        # a kwarg of another core: GTrXL's memory_len on the base's GRU
        ({"search": {"model.core_kwargs.memory_len": {"choice": [4]}}}, "memory_len"),
        # an unknown core inside a per-core grid
        ({"cores": {"gruu": {"core_kwargs": {}}}}, "model.core"),
        # an env kwarg the env does not take
        ({"overrides": {"task.corridor_length": 3}}, "task.corridor_length"),
    ],
)
def test_invalid_trials_fail_before_anything_runs(tmp_path, fields, key):
    spec = load_tune_spec(write_spec(tmp_path, **fields))
    with pytest.raises(TuneSpecError) as err:
        plan(spec)
    assert key in str(err.value)
    assert not (tmp_path / "store").exists()


def test_shipped_tmaze_search_is_valid():
    spec = load_tune_spec(SHIPPED)
    base, variants = plan(spec)
    cores = sorted(trial_config(base, v).model.core for v in variants)
    assert cores == ["gru"] * 2 + ["gtrxl"] * 4
    assert spec.scheduler.type == "asha"
    assert all(not math.isnan(v.params["ppo.lr"]) for v in variants)


def test_short_column_names():
    keys = ["ppo.lr", "model.core", "model.core_kwargs.memory_len", "a.lr"]
    assert short_names(keys) == ["ppo.lr", "core", "memory_len", "a.lr"]


def test_cli_dry_run_and_errors(tmp_path, capsys):
    assert main([str(SHIPPED), "--dry-run", "num_samples=1"]) == 0
    assert "3 trials valid" in capsys.readouterr().out
    assert main([str(write_spec(tmp_path, search={"ppo.lr": {"uniform": [1, 0]}}))]) == 2
    assert "search.ppo.lr" in capsys.readouterr().out
    # --resume of an experiment that was never run fails before Ray starts
    assert main([str(write_spec(tmp_path)), "--resume"]) == 2
    assert "no Tune experiment to restore" in capsys.readouterr().out


def test_a_failed_trial_is_reported_in_one_line():
    """Tune wraps a trial's exception with its traceback; the report prints its last line."""
    from memrl.tune.report import error_line

    wrapped = (
        "ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n"
        "Traceback (most recent call last):\n"
        '  File "trial.py", line 56, in train_trial\n'
        "memrl.checkpoints.CheckpointError: checkpoint iter_000002: algorithm/module.pt fails "
        "its SHA-256 check\n\n"
    )
    assert error_line(wrapped) == (
        "memrl.checkpoints.CheckpointError: checkpoint iter_000002: algorithm/module.pt fails "
        "its SHA-256 check"
    )
    assert error_line(RuntimeError("")) == "RuntimeError"
