"""``memrl bench cores`` on a tiny configuration: output format, state growth, bad input."""

from __future__ import annotations

import argparse
import json

import pytest

from memrl.bench import cores as bench
from memrl.cli import main

REQUIRED = {"core", "context", "device", "step_latency_us", "state_bytes", "train_timesteps_per_s"}
CONTEXTS = (4, 8)


def tiny_argv(out) -> list[str]:
    """Two cores that exist (a carry and a window core), two small contexts, one repeat."""
    return [
        "--out",
        str(out),
        "--cores",
        "gru,trxl",
        "--contexts",
        ",".join(map(str, CONTEXTS)),
        "--batch",
        "2",
        "--repeats",
        "1",
        "--train-repeats",
        "1",
        "--seq-len",
        "4",
        "--d-model",
        "16",
        "--num-layers",
        "1",
        "--device",
        "cpu",
    ]


def tiny_args(out, **overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    bench.add_arguments(parser)
    args = parser.parse_args(tiny_argv(out))
    vars(args).update(overrides)
    return args


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "cores.json"
    assert main(["bench", "cores", *tiny_argv(out)]) == 0
    return out


def test_writes_json_rows_and_markdown(tiny_run):
    rows = json.loads(tiny_run.read_text())
    assert isinstance(rows, list) and len(rows) == 2 * len(CONTEXTS)
    for row in rows:
        assert set(row) >= REQUIRED
        assert row["device"] == "cpu" and row["context"] in CONTEXTS
        assert row["step_latency_us"] > 0 and row["train_timesteps_per_s"] > 0
        assert isinstance(row["state_bytes"], int) and row["state_bytes"] > 0
    assert {r["core"] for r in rows} == {"gru", "trxl"}
    md = tiny_run.with_suffix(".md").read_text()
    assert md.startswith("| core | context | device | step_latency_us | state_bytes |")
    assert md.count("\n| gru |") == len(CONTEXTS) and md.count("\n| trxl |") == len(CONTEXTS)


def test_window_state_grows_with_context_carry_does_not(tiny_run):
    rows = json.loads(tiny_run.read_text())
    size = {(r["core"], r["context"]): r["state_bytes"] for r in rows}
    small, large = CONTEXTS
    assert size[("trxl", large)] > size[("trxl", small)]
    # One [layers, M, d] fp32 window plus its [M] mask: grows by (layers*d*4 + 1) per slot.
    assert size[("trxl", large)] - size[("trxl", small)] == (large - small) * (1 * 16 * 4 + 1)
    assert size[("gru", large)] == size[("gru", small)] == 1 * 16 * 4


def test_bad_core_name_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--cores: unknown core\(s\) \['mamba'\]; valid: gru"):
        bench.parse_cores("gru,mamba")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "cores", "--out", str(tmp_path / "x.json"), "--cores", "mamba"])
    assert exit_info.value.code == 2
    assert "unknown core(s) ['mamba']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--cores"):
        bench.run(tiny_args(tmp_path / "y.json", cores=["nope"]))
    assert not (tmp_path / "y.json").exists()


def test_bad_contexts_name_the_option():
    with pytest.raises(ValueError, match="--contexts"):
        bench.parse_contexts("64,-1")


def test_missing_core_module_is_skipped_and_reported(tmp_path, monkeypatch):
    real = bench.core_class

    def core_class(name):
        if name == "trxl":
            err = ModuleNotFoundError("No module named 'memrl.models.trxl'")
            err.name = "memrl.models.trxl"
            raise err
        return real(name)

    monkeypatch.setattr(bench, "core_class", core_class)
    out = tmp_path / "cores.json"
    rows = bench.run(tiny_args(out, contexts=[4]))
    skipped = [r for r in rows if r["skipped"]]
    assert [r["core"] for r in skipped] == ["trxl"] and skipped[0]["state_bytes"] is None
    assert [r["core"] for r in rows if not r["skipped"]] == ["gru"]
    md = out.with_suffix(".md").read_text()
    assert "Skipped: trxl (module memrl.models.trxl not found)" in md


def test_relit_claims_are_ratios_of_the_rows():
    rows = [
        {
            "core": "gtrxl",
            "context": 64,
            "device": "cpu",
            "step_latency_us": 100.0,
            "state_bytes": 1000,
            "skipped": None,
        },
        {
            "core": "gtrxl",
            "context": 128,
            "device": "cpu",
            "step_latency_us": 200.0,
            "state_bytes": 2000,
            "skipped": None,
        },
        {
            "core": "arelit",
            "context": 64,
            "device": "cpu",
            "step_latency_us": 50.0,
            "state_bytes": 600,
            "skipped": None,
        },
        {
            "core": "arelit",
            "context": 128,
            "device": "cpu",
            "step_latency_us": 55.0,
            "state_bytes": 600,
            "skipped": None,
        },
    ]
    lines = bench.relit_claims(rows)
    assert "context 128 over context 64: 1.10x (flat" in lines[0]
    assert "GTrXL's grows 2.0x" in lines[0]
    assert "memory_len=64: AReLiT/GTrXL step latency 0.50 (claim <= 0.6: holds)" in lines[1]
    assert "state bytes 0.600 (claim < 0.5: fails)" in lines[1]
    assert "step latency 0.28 (claim <= 0.6: holds), state bytes 0.300" in lines[2]


def test_relit_claims_flags_latency_growing_with_context():
    rows = [
        {
            "core": "arelit",
            "context": c,
            "device": "cpu",
            "step_latency_us": us,
            "state_bytes": 600,
            "skipped": None,
        }
        for c, us in ((64, 50.0), (256, 40.0), (1024, 80.0))
    ]
    # The dip at 256 is noise; what counts is 1024 against 64: 1.6x.
    assert "1.60x (NOT flat" in bench.relit_claims(rows)[0]


def test_cached_window_row(tmp_path):
    """A "+kv" row: the same core acting with its K/V cache; its state holds the cache too."""
    out = tmp_path / "cores.json"
    argv = tiny_argv(out)
    argv[argv.index("--cores") + 1] = "gtrxl,gtrxl+kv,arelit"
    assert main(["bench", "cores", *argv]) == 0
    rows = {(r["core"], r["context"]): r for r in json.loads(out.read_text())}
    for c in CONTEXTS:
        plain, cached = rows[("gtrxl", c)], rows[("gtrxl+kv", c)]
        assert cached["step_latency_us"] > 0 and cached["train_timesteps_per_s"] is None
        # window (layers*M*d fp32 + M mask bytes) plus K/V (2*layers*M*d fp32) and a version.
        assert cached["state_bytes"] - plain["state_bytes"] == 2 * 1 * c * 16 * 4 + 8
    assert "cached GTrXL memory_len=" in out.with_suffix(".md").read_text()


def test_width_scales_d_ff_at_the_core_default_ratio():
    from memrl.bench.cores import core_kwargs
    from memrl.models import core_class

    gtrxl, arelit, gru = (core_class(n) for n in ("gtrxl", "arelit", "gru"))
    assert core_kwargs(gtrxl, 64, 2, 32)["d_ff"] == 256  # defaults 512 / 128
    assert core_kwargs(gtrxl, 512, 2, 32)["d_ff"] == 2048
    assert core_kwargs(arelit, 64, 2, 32)["d_ff"] == 64  # defaults 128 / 128
    # At the default width the defaults stand; a core without d_ff gets none.
    assert core_kwargs(gtrxl, 128, 4, 64)["d_ff"] == gtrxl.hyperparameters()["d_ff"]
    assert "d_ff" not in core_kwargs(gru, 64, 1, 32)
