"""``memrl bench ppo`` on a tiny configuration: output files, keys, breakdown, bad input."""

from __future__ import annotations

import argparse
import json

import pytest

pytest.importorskip("ray")

from memrl.bench import ppo as bench  # noqa: E402
from memrl.cli import main  # noqa: E402

CONFIGS = ("rllib-lstm", "gru")


def tiny_argv(out) -> list[str]:
    """RLlib's LSTM and memrl's GRU, local sampling, one 64-step iteration each."""
    return [
        "--out",
        str(out),
        "--cores",
        ",".join(CONFIGS),
        "--num-env-runners",
        "0",
        "--num-envs-per-env-runner",
        "2",
        "--train-batch",
        "64",
        "--minibatch",
        "32",
        "--epochs",
        "1",
        "--max-seq-len",
        "8",
        "--d-model",
        "16",
        "--warmup",
        "0",
        "--rounds",
        "1",
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "ppo.json"
    assert main(["bench", "ppo", *tiny_argv(out)]) == 0
    return out


def test_json_rows_iterations_and_breakdown(tiny_run):
    payload = json.loads(tiny_run.read_text())
    assert set(payload) == {"settings", "rows", "iterations"}
    assert payload["settings"]["configs"] == list(CONFIGS)
    rows = {r["config"]: r for r in payload["rows"]}
    assert set(rows) == set(CONFIGS)
    for name, row in rows.items():
        assert set(row) == set(bench.COLUMNS)
        assert row["params"] > 0
        assert row["env_steps_per_s"] > 0
        assert row["steps_per_s_min"] <= row["env_steps_per_s"] <= row["steps_per_s_max"]
        # Every part of the breakdown was reported by RLlib's timers and is a duration.
        for field in bench.BREAKDOWN:
            assert row[field] is not None and row[field] >= 0, (name, field)
        assert row["learner_fwd_bwd_s"] > 0 and row["inference_s"] > 0
        assert row["state_rebuild_s"] > 0  # both pipelines rebuild or add training states
        # Sampling contains the runner's parts (one local runner here).
        parts = sum(
            row[f] for f in ("env_step_s", "inference_s", "env_to_module_s", "module_to_env_s")
        )
        assert parts <= row["sample_s"] * 1.05
        records = payload["iterations"][name]
        assert len(records) == 1 and records[0]["env_steps"] >= 64
        # The learner's FLOPs per timestep, and its rate over the one round's learner time.
        assert row["train_mflop_per_step"] > 0
        assert row["learner_gflop_per_s"] == pytest.approx(
            row["train_mflop_per_step"]
            * 1e6
            * records[0]["env_steps"]
            / row["learner_fwd_bwd_s"]
            / 1e9
        )
    assert rows["rllib-lstm"]["vs_rllib_lstm"] == pytest.approx(1.0)
    assert rows["gru"]["vs_gru"] == pytest.approx(1.0)
    assert rows["gru"]["vs_rllib_lstm"] == pytest.approx(
        rows["gru"]["env_steps_per_s"] / rows["rllib-lstm"]["env_steps_per_s"]
    )


def test_markdown_table(tiny_run):
    md = tiny_run.with_suffix(".md").read_text()
    assert md.startswith("| " + " | ".join(bench.COLUMNS) + " |")
    for name in CONFIGS:
        assert md.count(f"\n| {name} |") == 1
    assert "Settings:" in md and "rllib-lstm: RLlib's DefaultModelConfig" in md


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    vars(args).update(overrides)
    return args


def test_defaults_are_the_issue_settings():
    s = bench.PPOBenchSettings.from_args(_args())
    assert s.configs == ["rllib-lstm", "gru", "gtrxl", "arelit"]
    assert (s.num_env_runners, s.num_envs_per_env_runner) == (2, 4)
    assert (s.train_batch, s.epochs, s.minibatch, s.max_seq_len) == (2000, 4, 500, 20)
    assert bench.memrl_core_kwargs("gru", s) == {"hidden_size": 64}
    # d_ff keeps each core's default ratio to d_model: GTrXL 512/128, AReLiT 128/128.
    assert bench.memrl_core_kwargs("gtrxl", s) == {
        "d_model": 64,
        "num_layers": 2,
        "memory_len": 64,
        "d_ff": 256,
    }
    assert bench.memrl_core_kwargs("arelit", s) == {"d_model": 64, "num_layers": 2, "d_ff": 64}
    s = bench.PPOBenchSettings.from_args(
        _args(core_kwargs={"gtrxl": {"num_heads": 2, "d_ff": 512}})
    )
    assert bench.memrl_core_kwargs("gtrxl", s)["num_heads"] == 2
    assert bench.memrl_core_kwargs("gtrxl", s)["d_ff"] == 512  # the overrides come last


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"train_batch": 0}, "--train-batch"),
        ({"num_env_runners": -1}, "--num-env-runners"),
        ({"core_kwargs": {"trxl": {}}}, "--core-kwargs"),
    ],
)
def test_bad_settings_name_the_flag(overrides, match):
    with pytest.raises(ValueError, match=match):
        bench.PPOBenchSettings.from_args(_args(**overrides))


def test_unknown_core_lists_the_valid_names():
    with pytest.raises(ValueError, match="rllib-lstm"):
        bench.parse_configs("gru,nope")
    with pytest.raises(ValueError, match=r"\+compile"):
        bench.parse_configs("gru,nope+compile")


def test_compile_configuration_is_the_core_acting_compiled():
    s = bench.PPOBenchSettings.from_args(_args(cores=["gtrxl", "gtrxl+compile"]))
    assert bench.memrl_core_kwargs("gtrxl+compile", s) == bench.memrl_core_kwargs("gtrxl", s)
    for name, compiled in (("gtrxl", False), ("gtrxl+compile", True)):
        model_config = bench.build_config(name, s).rl_module_spec.model_config
        assert model_config["core"] == "gtrxl"
        assert model_config["compile_acting"] is compiled


def test_breakdown_scales_per_call_timers():
    flat = {
        "timers/env_runner_sampling_timer": 2.0,
        "env_runners/env_step_timer": 0.001,
        "env_runners/env_to_module_connector/timers/connectors/memory_state_to_module": 0.0001,
        "timers/learner_update_timer": 1.5,
        "learners/__all_modules__/learner_connector/connector_pipeline_timer": 0.5,
    }
    out = bench.breakdown(flat, vector_steps=250)
    assert out["env_step_s"] == pytest.approx(0.25)
    assert out["runner_state_s"] == pytest.approx(0.025)
    assert out["learner_fwd_bwd_s"] == pytest.approx(1.0)
    assert out["weight_sync_s"] is None and out["inference_s"] is None
