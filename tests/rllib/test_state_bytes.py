"""``memrl bench state-bytes`` run tiny: real env-runner episodes, both storage schemes."""

from __future__ import annotations

import argparse
import json

import pytest

from memrl.bench import state_bytes


def _run(tmp_path, *argv: str) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(tmp_path / "state_bytes.json"))
    state_bytes.add_arguments(parser)
    rows = state_bytes.run(parser.parse_args(list(argv)))
    on_disk = json.loads((tmp_path / "state_bytes.json").read_text())
    assert on_disk == rows
    assert (tmp_path / "state_bytes.md").exists()
    return rows


def test_state_bytes_gtrxl_and_gru(tmp_path) -> None:
    rows = {r["core"]: r for r in _run(tmp_path, "--cores", "gtrxl,gru", "--steps", "6")}
    assert set(rows) == {"gtrxl", "gru"}
    for row in rows.values():
        assert set(row) == {"core", "memrl_bytes_per_step", "rllib_default_bytes_per_step", "ratio"}
    gtrxl = rows["gtrxl"]
    # One fp32 (layers=4, d=128) slice per step, against the whole 4x256x128 window + mask.
    assert gtrxl["memrl_bytes_per_step"] == 4 * 128 * 4
    assert gtrxl["rllib_default_bytes_per_step"] == 4 * 256 * 128 * 4 + 256
    assert gtrxl["ratio"] >= 100
    # A carry core stores its full state either way.
    assert rows["gru"]["memrl_bytes_per_step"] == rows["gru"]["rllib_default_bytes_per_step"]
    assert rows["gru"]["ratio"] == pytest.approx(1.0)


def test_state_bytes_rejects_unknown_core(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown core"):
        _run(tmp_path, "--cores", "gtrxl,nope")
