"""The `memrl` command dispatches to its subcommands and names the valid ones on a typo."""

import pytest

from memrl.cli import main


def test_unknown_command_lists_valid_ones(capsys):
    assert main(["trian"]) == 2
    assert "valid: train, eval, tune, bench" in capsys.readouterr().err


def test_unknown_benchmark_lists_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "corez"])
    assert exc.value.code == 2
    assert "'cores', 'envs', 'offline', 'ppo', 'replay', 'state-bytes'" in capsys.readouterr().err


def test_benchmark_help_reaches_the_benchmark(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "cores", "--help"])
    assert exc.value.code == 0
    assert "--contexts" in capsys.readouterr().out
