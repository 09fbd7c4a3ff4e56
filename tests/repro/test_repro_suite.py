"""The learning-suite machinery on a fake task: plan, run, interrupt, resume, aggregate, report.

The cell runner is a fake (a deterministic learning curve per core and seed), injected where
memrl.repro.cell.run_cell would be; everything else is the real code path (in-process executor).
"""

import json
import math
import struct

import numpy as np
import pytest
import yaml
from scipy import stats

from memrl.repro.cell import CellResult
from memrl.repro.cells import plan_cells
from memrl.repro.report import write_outputs
from memrl.repro.runner import load_finished, run_cells, select
from memrl.repro.stats import curves_on_grid, first_crossing, t_interval
from memrl.repro.suite import load_suite

SUITE = {
    "seeds": 3,
    "margin": 1.0,
    "baseline": "mlp",
    "seq_lens": [8, 16],
    "overrides": {"logging.tensorboard": False},
    "cores": {
        "gru": {"core_kwargs": {"hidden_size": 8, "num_layers": 1}},
        "lstm": {"core_kwargs": {"hidden_size": 8, "num_layers": 1}},
        "mlp": {"core_kwargs": {"hidden_size": 8}},
    },
    "tasks": {
        "fake": {
            "config": "demo/gru",
            "overrides": {"task.corridor_len": 2},
            "timesteps": 1000,
            "chance": 0.0,
            "threshold": 2.0,
            "eval_episodes": 5,
        }
    },
}
# Final return per (core, seq_len): gru learns at both lengths, lstm only at 16, mlp never.
LEVEL = {("gru", 8): 3.0, ("gru", 16): 3.5, ("lstm", 8): 0.4, ("lstm", 16): 3.2}


def fake_curve(cell):
    """Ten iterations of 100 steps; the return ramps to the cell's level (seed adds noise)."""
    level = LEVEL.get((cell.core, cell.seq_len), 0.1) + 0.1 * cell.seed**2
    first = [(100, None)]  # no episode finished in the first iteration
    return first + [(100 * i, level * i / 10) for i in range(2, 11)]


def fake_runner(cell):
    curve = fake_curve(cell)
    final = curve[-1][1] + 0.05
    return CellResult.from_run(
        cell, curve=curve, iterations=10, env_steps=1000, train_time_s=2.0, wall_time_s=2.5,
        evaluation={"return_mean": final, "success_rate": min(1.0, final / 4)},
        sampled_evaluation={"return_mean": final - 1, "success_rate": min(1.0, final / 5)},
    )  # fmt: skip


class Interrupt(KeyboardInterrupt):
    pass


@pytest.fixture()
def suite(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    return load_suite(path)


def test_runs_resumes_and_writes_all_three_outputs(suite, tmp_path):
    out = tmp_path / "out"
    cells = plan_cells(suite, "cpu", 3, out)
    assert len(cells) == 3 * 2 * 3  # cores x seq lens x seeds
    assert len({c.key for c in cells}) == len(cells)
    cfg = cells[0].train_config()
    assert (cfg.model.core, cfg.model.max_seq_len, cfg.task.env_kwargs["corridor_len"]) == (
        "gru", 8, 2,
    )  # fmt: skip
    assert cfg.stop.timesteps == 1000 and cfg.stop.time_s is None  # demo's time_s cleared
    assert cfg.resources.num_env_runners == 0  # a cpu-scale cell is one process

    # First run: one cell fails, then the run is interrupted after 5 cells.
    calls = []

    def flaky(cell):
        calls.append(cell.id)
        if cell.id == "fake/lstm/L8/s1":
            raise ValueError("boom in one cell")
        if len(calls) > 5:
            raise Interrupt
        return fake_runner(cell)

    order = sorted(cells, key=lambda c: (c.core != "lstm", c.id))  # the failing cell early
    with pytest.raises(Interrupt):
        run_cells(order, out, runner=flaky, executor="local")
    on_disk = load_finished(out)
    assert len(on_disk) == 5
    failed = [r for r in on_disk.values() if r.status == "failed"]
    assert [r.id for r in failed] == ["fake/lstm/L8/s1"]
    assert "boom in one cell" in failed[0].error

    # Resume: only the cells not finished ok run (the failed one is retried).
    rerun = []

    def counting(cell):
        rerun.append(cell.key)
        return fake_runner(cell)

    summary = run_cells(cells, out, runner=counting, executor="local")
    finished_before = {k for k, r in on_disk.items() if r.status == "ok"}
    assert len(finished_before) == 4
    assert set(rerun) == {c.key for c in cells} - finished_before
    assert len(rerun) == len(set(rerun))
    assert (summary.reused, summary.ran, summary.failed) == (4, len(cells) - 4, 0)

    # A third run has nothing left to do.
    nothing = run_cells(cells, out, runner=counting, executor="local")
    assert nothing.ran == 0 and len(rerun) == len(cells) - 4

    paths = write_outputs(suite, cells, summary.results, out, scale="cpu", command="memrl repro x")
    data = json.loads((out / "results.json").read_text())
    rows = {(r["core"], r["seq_len"]): r for r in data["tasks"]["fake"]["cells"]}
    assert set(rows) == {(c, n) for c in ("gru", "lstm", "mlp") for n in (8, 16)}
    for (core, n), row in rows.items():
        level = LEVEL.get((core, n), 0.1)
        finals = np.array([level + 0.1 * s**2 + 0.05 for s in range(3)])
        mean = finals.mean()
        half = stats.t.ppf(0.975, 2) * finals.std(ddof=1) / math.sqrt(3)
        assert row["final_return"]["mean"] == pytest.approx(mean)
        assert row["final_return"]["ci95"] == pytest.approx([mean - half, mean + half])
        assert row["seeds_ok"] == 3
        reach = [100 * math.ceil(2.0 * 10 / (level + 0.1 * s**2) - 1e-9) for s in range(3)]
        expect = [r if r <= 1000 else None for r in reach]
        assert row["steps_to_threshold"]["per_seed"] == expect
        assert row["env_steps_per_s"]["mean"] == pytest.approx(500.0)
        assert row["sampled_return"]["mean"] == pytest.approx(mean - 1)
        sampled = np.minimum(1.0, finals / 5).mean()
        assert row["sampled_success_rate"]["mean"] == pytest.approx(sampled)
        if core == "mlp":
            assert row["margin_over_baseline"] is None and row["baseline"]
            continue
        base = np.array([0.1 + 0.1 * s**2 + 0.05 for s in range(3)]).mean()
        assert row["margin_over_baseline"] == pytest.approx(mean - base)
        assert row["beats_baseline"] == (mean - base >= 1.0)
    assert rows[("lstm", 8)]["beats_baseline"] is False
    assert rows[("gru", 8)]["beats_baseline"] is True

    report = (out / "report.md").read_text()
    assert "memrl repro x" in report.splitlines()[3]  # the command, in a block at the top
    assert report.count("| gru |") == 2 and "**FAIL**" in report and "pass" in report
    gru8 = next(line for line in report.splitlines() if line.startswith("| gru | 8 |"))
    cols = [c.strip() for c in gru8.strip("|").split("|")]
    assert cols[5].startswith(f"{rows[('gru', 8)]['sampled_success_rate']['mean']:.0%} ± ")
    assert "![fake](fake.png)" in report
    png = paths["png:fake"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 300 and height > 200


def test_a_failed_cell_is_reported_not_fatal(suite, tmp_path):
    out = tmp_path / "out"
    cells = plan_cells(suite, "cpu", 2, out)

    def runner(cell):
        if cell.core == "lstm" and cell.seq_len == 16 and cell.seed == 0:
            raise RuntimeError("diverged")
        return fake_runner(cell)

    summary = run_cells(cells, out, runner=runner, executor="local")
    assert summary.failed == 1 and summary.ran == len(cells)
    write_outputs(suite, cells, summary.results, out, scale="cpu", command="c")
    data = json.loads((out / "results.json").read_text())
    assert [f["id"] for f in data["failures"]] == ["fake/lstm/L16/s0"]
    row = next(
        r for r in data["tasks"]["fake"]["cells"] if (r["core"], r["seq_len"]) == ("lstm", 16)
    )
    assert row["seeds_failed"] == [0] and row["seeds_ok"] == 1
    assert row["final_return"]["ci95"] is None  # one seed: no interval
    assert "diverged" in (out / "report.md").read_text()


def test_cell_key_ignores_bookkeeping_but_not_hyperparameters(suite, tmp_path):
    a = plan_cells(suite, "cpu", 1, tmp_path / "a")
    b = plan_cells(suite, "cpu", 1, tmp_path / "b")
    assert [c.key for c in a] == [c.key for c in b]  # another output folder: same cells
    changed = suite.model_copy(deep=True)
    changed.cores["gru"].overrides = {"ppo.lr": 0.01}
    c = plan_cells(changed, "cpu", 1, tmp_path / "a")
    diff = [x.id for x, y in zip(a, c, strict=True) if x.key != y.key]
    assert diff == ["fake/gru/L8/s0", "fake/gru/L16/s0"]


def test_select_matches_cell_ids(suite, tmp_path):
    cells = plan_cells(suite, "cpu", 2, tmp_path)
    assert {c.id for c in select(cells, "fake/gru/*/s1")} == {"fake/gru/L8/s1", "fake/gru/L16/s1"}
    assert len(select(cells, "*/mlp/*,*/lstm/L8/*")) == 4 + 2
    assert select(cells, None) == cells


def test_paper_scale_runs_the_named_configs_unchanged(tmp_path):
    data = {**SUITE, "tasks": {"fake": {**SUITE["tasks"]["fake"], "paper": {"gru": "tmaze/gru"}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    cells = plan_cells(load_suite(path), "paper", 2, tmp_path / "out")
    assert [c.id for c in cells] == ["fake/gru/L256/s0", "fake/gru/L256/s1"]
    cfg = cells[0].train_config()
    assert (
        cfg.task.env_kwargs["corridor_len"] == 200 and cfg.model.core_kwargs["hidden_size"] == 680
    )
    assert cfg.stop.timesteps == 5_000_000 and cfg.logging.tensorboard  # no cpu overrides


def test_stats_helpers():
    mean, low, high = t_interval([1.0, 2.0, 4.0])
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((7 / 3, 7 / 3 - half, 7 / 3 + half))
    assert t_interval([2.0]) == (2.0, 2.0, 2.0)
    assert t_interval([1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert first_crossing([(10, None), (20, 1.0), (30, 2.5), (40, 3.0)], 2.5) == 30
    assert first_crossing([(10, 1.0)], 2.0) is None
    steps, m, lo, hi = curves_on_grid([[(0, 0.0), (100, 1.0)], [(0, 1.0), (50, 2.0)]], points=3)
    assert steps.tolist() == [0.0, 25.0, 50.0]  # up to the shorter curve's end
    assert m.tolist() == pytest.approx([0.5, 0.875, 1.25])


def test_a_seed_stopped_at_its_return_target_is_held_to_the_others_end():
    curves = [[(0, 0.0), (50, 2.0)], [(0, 0.0), (100, 1.0)]]
    steps, m, _, _ = curves_on_grid(curves, points=3, held=[True, False])
    assert steps.tolist() == [0.0, 50.0, 100.0]  # the seed that ran its budget sets the end
    assert m.tolist() == pytest.approx([0.0, 1.25, 1.5])  # the held seed stays at 2.0
    steps, m, _, _ = curves_on_grid(curves, points=3, held=[True, True])
    assert steps.tolist() == [0.0, 50.0, 100.0] and m[-1] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="held has 1 entries for 2 curves"):
        curves_on_grid(curves, held=[True])


def test_cell_key_ignores_other_algorithms_sections(suite, tmp_path):
    """A PPO cell's key does not move with the r2d2/td3/qtransformer/replay/data sections (a
    field added there must not rerun finished PPO cells), but does with its own ppo section."""
    from memrl.repro.cells import cell_key

    (cell, *_) = plan_cells(suite, "cpu", 1, tmp_path)
    assert cell.config["algo"] == "ppo"
    for section, field in (("qtransformer", "value_scale"), ("td3", "new_field"),
                           ("replay", "new_field"), ("data", "new_field")):  # fmt: skip
        other = {**cell.config, section: {**(cell.config.get(section) or {}), field: 123.0}}
        assert cell_key(other, cell.threshold, cell.eval_episodes) == cell.key, section
    own = {**cell.config, "ppo": {**cell.config["ppo"], "lr": 0.123}}
    assert cell_key(own, cell.threshold, cell.eval_episodes) != cell.key
    offline = {**cell.config, "algo": "qtransformer"}
    changed = {**offline, "qtransformer": {**offline["qtransformer"], "value_scale": 9.0}}
    assert cell_key(offline, 0.0, 1) != cell_key(changed, 0.0, 1)
