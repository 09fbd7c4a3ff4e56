"""Suite YAML errors name the dotted key and the valid keys or labels; bad cells fail early."""

import pytest
import yaml

from memrl.repro.cells import plan_cells
from memrl.repro.cli import main
from memrl.repro.suite import SuiteError, list_suites, load_suite, suite_from_dict

GOOD = {
    "margin": 0.5,
    "cores": {"gru": {"core_kwargs": {"hidden_size": 8}}, "mlp": {}},
    "tasks": {"t": {"config": "demo/gru", "chance": 0.0, "threshold": 3.0}},
}


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for part in head:
            node = node[part]
        node[last] = value
    return data


def _error(data) -> str:
    with pytest.raises(SuiteError) as info:
        suite_from_dict(data, source="s.yaml")
    return str(info.value)


def test_a_good_suite_validates_with_defaults():
    spec = suite_from_dict(GOOD)
    assert spec.seeds == 3 and spec.seq_lens == [16] and spec.baseline == "mlp"
    assert spec.task_cores("t") == ["gru", "mlp"] and spec.task_margin("t") == 0.5


def test_unknown_top_level_key_names_it_and_the_valid_keys():
    message = _error(_with(sedes=3))
    assert "sedes: unknown key" in message and "did you mean 'seeds'" in message
    assert "valid: name, description, seeds, margin" in message


def test_unknown_key_inside_a_core_or_task_names_the_dotted_path():
    message = _error(_with(cores__gru__core_kwarg={}))
    assert "cores.gru.core_kwarg: unknown key; did you mean 'core_kwargs'" in message
    assert "valid: core, core_kwargs, overrides" in message
    message = _error(_with(tasks__t__treshold=1.0))
    assert "tasks.t.treshold: unknown key; did you mean 'threshold'" in message
    message = _error(_with(tasks__t__references=[{"label": "x", "value": 1, "val": 2}]))
    assert "tasks.t.references.0.val: unknown key" in message and "valid: label, value" in message


def test_missing_and_mistyped_values():
    data = _with()
    del data["tasks"]["t"]["chance"]
    assert "tasks.t.chance: required key is missing" in _error(data)
    assert "seeds: Input should be greater than 0" in _error(_with(seeds=0))
    assert "margin: " in _error(_with(margin="big"))


def test_labels_must_resolve():
    message = _error(_with(baseline="mlpp"))
    assert "baseline: unknown core label 'mlpp'" in message and "valid: gru, mlp" in message
    message = _error(_with(tasks__t__cores=["gru", "lsmt"]))
    assert "tasks.t.cores[1]: unknown core 'lsmt'" in message
    assert "tasks.t.paper.gtrxl: unknown core label" in _error(
        _with(tasks__t__paper={"gtrxl": "x"})
    )
    assert "a label must match" in _error(_with(cores={"gru/x": {}, "mlp": {}}))


def test_a_cell_whose_config_is_invalid_fails_before_anything_runs(tmp_path):
    spec = suite_from_dict({**_with(cores__gru__core_kwargs={"hidden_sise": 8}), "name": "s"})
    with pytest.raises(SuiteError) as info:
        plan_cells(spec, "cpu", 1, tmp_path)
    assert "tasks.t x cores.gru" in str(info.value)
    assert "model.core_kwargs.hidden_sise" in str(info.value)


def test_missing_suite_lists_the_shipped_ones():
    assert {"quick", "horizon", "paper"} <= set(list_suites())
    with pytest.raises(SuiteError, match="did you mean 'quick'"):
        load_suite("quik")


@pytest.mark.parametrize("name", ["quick", "horizon", "paper"])
def test_shipped_suites_plan(name, tmp_path):
    spec = load_suite(name)
    cells = plan_cells(spec, "cpu", 1, tmp_path)
    assert {c.core for c in cells} >= {"mlp"} or name == "paper"
    if any(t.paper for t in spec.tasks.values()):
        assert plan_cells(spec, "paper", 1, tmp_path)


def test_cli_dry_run_and_errors(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main([str(path), "--dry-run", "--seeds", "2", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "todo  t/gru/L16/s1" in out and "4 cells" in out
    assert main([str(path), "--dry-run", "--cells", "nothing/*"]) == 2
    assert main([str(path), "--dry-run", "--checkpoint-every", "-1"]) == 2
    assert "--checkpoint-every must be >= 0, got -1" in capsys.readouterr().out
    path.write_text(yaml.safe_dump(_with(sedes=1)))
    assert main([str(path), "--dry-run"]) == 2
    assert "sedes: unknown key" in capsys.readouterr().out
