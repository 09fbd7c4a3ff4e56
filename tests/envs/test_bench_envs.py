"""The env benchmark writes one timed row per case, with positive throughput."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memrl.bench import envs


def test_bench_envs_smoke(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    envs.add_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path / "envs.json"), "--families", "tmaze", "market", "--scale", "0.01"]
    )
    rows = envs.run(args)
    payload = json.loads((tmp_path / "envs.json").read_text())
    assert [r["env_id"] for r in payload["rows"]] == ["memrl/TMaze-120-v0", "memrl/Market-v0"]
    assert all(r["steps"] == 200 and r["steps_per_s"] > 0 for r in rows)
    assert "steps_per_s" in (tmp_path / "envs.md").read_text()
