"""Checkpoint integrity: atomic saves with a manifest, verification before anything is unpickled
(eval, ``--resume`` and Tune restores), the newest good checkpoint of a run, a full disk.

The algorithm here is a stand-in that writes a few files (as RLlib's ``save_to_path`` does), so
these tests run without Ray; the end-to-end ones on a real checkpoint are in test_evaluate.py.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from pathlib import Path

import pytest

from memrl import checkpoints
from memrl.checkpoints import CheckpointError, CheckpointState
from memrl.config import load_config

TINY = ["stop.iterations=2", "task.corridor_len=4", "model.core_kwargs.hidden_size=8"]


class FakeAlgo:
    """Writes ``algorithm/`` like RLlib: a state pickle and a nested module file."""

    def __init__(self, payload: bytes = b"weights") -> None:
        self.payload = payload
        self.fail_after: int | None = None  # raise ENOSPC after this many files

    def save_to_path(self, path: str) -> str:
        root = Path(path)
        (root / "learner_group" / "module").mkdir(parents=True)
        files = [
            (root / "algorithm_state.pkl", b"\x80\x04state" + self.payload),
            (root / "learner_group" / "module" / "module_state.pt", self.payload * 64),
        ]
        for i, (file, data) in enumerate(files):
            if self.fail_after is not None and i >= self.fail_after:
                raise OSError(errno.ENOSPC, "No space left on device", str(file))
            file.write_bytes(data)
        return path


def _config(tmp_path: Path, name: str = "tmaze-gru") -> dict:
    cfg = load_config("tmaze/gru", [*TINY, f"output_dir={tmp_path}", f"name={name}"])
    return cfg.to_yaml_dict()


def _save(root: Path, iteration: int, config: dict, algo: FakeAlgo | None = None) -> Path:
    state = CheckpointState(iteration, iteration * 100, float(iteration), config["name"])
    return checkpoints.save(algo or FakeAlgo(), root, config, state, keep=5)


@pytest.fixture
def run(tmp_path) -> tuple[Path, list[Path]]:
    """A run root with three good checkpoints (iterations 1..3)."""
    root = tmp_path / "checkpoints" / "tmaze-gru"
    config = _config(tmp_path)
    return root, [_save(root, i, config, FakeAlgo(bytes([i]) * 8)) for i in (1, 2, 3)]


MODULE = "algorithm/learner_group/module/module_state.pt"


def _flip_byte(ckpt: Path) -> None:
    file = ckpt / MODULE
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))


def _truncate(ckpt: Path) -> None:
    file = ckpt / MODULE
    file.write_bytes(file.read_bytes()[:10])


def _remove(ckpt: Path) -> None:
    (ckpt / MODULE).unlink()


def _other_manifest(ckpt: Path) -> None:
    """The manifest of another run's checkpoint (same iteration, another config)."""
    other_root = ckpt.parent.parent / "other"
    config = _config(ckpt.parent.parent.parent, name="other-run")
    other = _save(other_root, 3, config, FakeAlgo(b"\x03" * 8))
    shutil.copy(other / checkpoints.MANIFEST_FILE, ckpt / checkpoints.MANIFEST_FILE)


DAMAGE = {
    "flipped byte": (_flip_byte, "SHA-256"),
    "truncated": (_truncate, "bytes, its manifest says"),
    "missing file": (_remove, "is missing"),
    "another run's manifest": (_other_manifest, checkpoints.CONFIG_FILE),
}


def test_save_writes_a_manifest_that_verifies_and_leaves_no_partial_folder(run):
    root, saved = run
    manifest = checkpoints.verify(saved[-1])
    assert manifest["format"] == checkpoints.FORMAT_VERSION
    assert set(manifest["versions"]) == {"memrl", "ray", "torch"}
    assert set(manifest["files"]) == {
        "algorithm/algorithm_state.pkl",
        MODULE,
        checkpoints.CONFIG_FILE,
        checkpoints.STATE_FILE,
    }
    assert manifest["files"][MODULE]["size"] == 8 * 64
    assert manifest["config_sha256"] == checkpoints.config_hash(
        checkpoints.load_config_data(saved[-1])
    )
    assert sorted(p.name for p in root.iterdir()) == [
        "iter_000001",
        "iter_000002",
        "iter_000003",
        "latest",
    ]
    assert checkpoints.find(root) == saved[-1]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(run, damage):
    root, saved = run
    spoil, what = DAMAGE[damage]
    spoil(saved[-1])
    with pytest.raises(CheckpointError) as err:
        checkpoints.verify(saved[-1])
    message = str(err.value)
    assert "\n" not in message and what in message and str(saved[-1]) in message
    if damage != "another run's manifest":
        assert MODULE in message


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_resume_of_a_run_takes_the_newest_checkpoint_that_verifies(run, damage, caplog):
    from memrl.train import resolve_cli

    root, saved = run
    DAMAGE[damage][0](saved[-1])
    with caplog.at_level(logging.WARNING, logger="memrl.checkpoints"):
        cfg, resume = resolve_cli(["--resume", str(root)])
    assert resume == saved[-2]
    assert cfg.name == "tmaze-gru"
    skipped = [r.getMessage() for r in caplog.records if "skipping iter_000003" in r.getMessage()]
    assert len(skipped) == 1 and DAMAGE[damage][1] in skipped[0], caplog.text
    assert any("using iter_000002" in r.getMessage() for r in caplog.records)


def test_every_checkpoint_bad_is_one_error(run):
    root, saved = run
    for ckpt in saved:
        _flip_byte(ckpt)
    with pytest.raises(CheckpointError, match=r"no checkpoint of .* verifies \(3 tried\)"):
        checkpoints.find_verified(root)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["eval", "train --resume"])
def test_cli_refuses_a_damaged_checkpoint_in_one_line(run, damage, command, capsys):
    from memrl.cli import main

    _, saved = run
    DAMAGE[damage][0](saved[-1])
    argv = ["eval", str(saved[-1])] if command == "eval" else ["train", "--resume", str(saved[-1])]
    assert main(argv) == 2
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert "Traceback" not in text
    assert text.startswith(f"memrl {command.split()[0]}: checkpoint ")
    assert DAMAGE[damage][1] in text.replace("\n", " ")


def test_checkpoint_of_another_format_is_refused_with_its_version(run):
    _, saved = run
    manifest_file = saved[-1] / checkpoints.MANIFEST_FILE
    manifest = json.loads(manifest_file.read_text())
    manifest["format"] = 1
    manifest["versions"]["memrl"] = "0.0.9"
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"written by memrl 0\.0\.9 in checkpoint format 1"):
        checkpoints.verify(saved[-1])


def test_checkpoint_without_manifest_is_refused_as_older(run):
    _, saved = run
    (saved[-1] / checkpoints.MANIFEST_FILE).unlink()
    with pytest.raises(CheckpointError, match="before checkpoint format 2"):
        checkpoints.verify(saved[-1])


def test_unlisted_file_is_refused(run):
    _, saved = run
    (saved[-1] / "algorithm" / "extra.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match=r"algorithm/extra\.pkl is not in its manifest"):
        checkpoints.verify(saved[-1])


@pytest.mark.parametrize("where", ["algorithm files", "manifest"])
def test_full_disk_fails_the_save_and_keeps_the_previous_checkpoint(run, where, monkeypatch):
    root, saved = run
    config = checkpoints.load_config_data(saved[-1])
    algo = FakeAlgo()
    if where == "algorithm files":
        algo.fail_after = 1  # the first file is written, the second hits the full disk
    else:
        real = checkpoints._write_text

        def full(path, text):
            if Path(path).name == checkpoints.MANIFEST_FILE:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            real(path, text)

        monkeypatch.setattr(checkpoints, "_write_text", full)
    with pytest.raises(CheckpointError) as err:
        _save(root, 4, config, algo)
    message = str(err.value)
    assert "\n" not in message
    assert "iter_000004 not saved: no space left on device" in message
    assert "newest kept checkpoint is iter_000003" in message
    # nothing of the failed save is left; the previous checkpoints verify; latest unchanged
    assert sorted(p.name for p in root.iterdir()) == [
        "iter_000001",
        "iter_000002",
        "iter_000003",
        "latest",
    ]
    assert checkpoints.find_verified(root) == saved[-1]
    assert (root / checkpoints.LATEST_FILE).read_text().strip() == "iter_000003"


def test_resave_of_the_same_iteration_replaces_it(run):
    root, saved = run
    config = checkpoints.load_config_data(saved[-1])
    again = _save(root, 3, config, FakeAlgo(b"new"))
    assert again == saved[-1]
    checkpoints.verify(again)
    assert (again / "algorithm" / "algorithm_state.pkl").read_bytes().endswith(b"new")


def test_keep_prunes_by_save_order_not_by_iteration(tmp_path):
    """A rerun under the same name: the folder still holds the earlier run's iter_000117. Saving
    iteration 52 with keep=1 keeps the new checkpoint (it used to delete it, leaving only the
    stale 117: a repro cell then failed to find the checkpoint it had just written)."""
    root = tmp_path / "checkpoints" / "cell"
    config = _config(tmp_path)
    checkpoints.save(FakeAlgo(b"old"), root, config, CheckpointState(117, 117, 1.0, "cell"), keep=1)
    new = checkpoints.save(
        FakeAlgo(b"new"), root, config, CheckpointState(52, 52, 1.0, "cell"), keep=1
    )
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_000052"]
    assert checkpoints.find_verified(root) == new
    # keep=2: the two saved last survive, whatever their numbers.
    checkpoints.save(FakeAlgo(b"newer"), root, config, CheckpointState(7, 7, 1.0, "cell"), keep=2)
    assert sorted(p.name for p in root.glob("iter_*")) == ["iter_000007", "iter_000052"]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_tune_restore_refuses_a_damaged_checkpoint(run, damage, tmp_path, monkeypatch):
    """``train_trial`` given a damaged Tune checkpoint fails before building the algorithm."""
    from ray import tune

    import memrl.session
    from memrl.tune import Variant, train_trial

    root, saved = run
    DAMAGE[damage][0](saved[-1])
    for old in saved[:-1]:  # a Tune checkpoint folder holds one memrl checkpoint
        shutil.rmtree(old)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(root))

    def never(*args, **kwargs):
        raise AssertionError("the algorithm was built from a damaged checkpoint")

    monkeypatch.setattr(memrl.session, "build_algorithm", never)
    base = checkpoints.load_config_data(saved[-1])
    variant = Variant(0, {}, [])
    with pytest.raises(CheckpointError, match=DAMAGE[damage][1]):
        train_trial({"variant": variant.to_dict()}, base=base, experiment=str(tmp_path / "exp"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_on_a_full_disk_stops_in_one_line_and_resume_uses_the_previous(
    tmp_path, monkeypatch, capsys
):
    """A real run: the second checkpoint's manifest hits ENOSPC; ``memrl train`` exits 2 with
    one line, iter_000001 is intact, and ``--resume`` of the run folder continues from it."""
    from test_train import TINY as TRAIN_TINY

    from memrl.train import main

    real = checkpoints._write_text

    def full_at_second(path, text):
        if Path(path).name == checkpoints.MANIFEST_FILE and ".iter_000002" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(checkpoints, "_write_text", full_at_second)
    argv = ["tmaze/gru", "stop.iterations=3", f"output_dir={tmp_path}", *TRAIN_TINY]
    assert main(argv) == 2
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if "memrl train:" in x)
    assert "iter_000002 not saved: no space left on device" in text.replace("\n", " ")
    assert "Traceback" not in text and line.startswith("memrl train: checkpoint ")
    root = tmp_path / "checkpoints" / "tmaze-gru"
    assert [p.name for p in root.iterdir() if p.name.startswith(("iter", "."))] == ["iter_000001"]
    checkpoints.verify(root / "iter_000001")

    monkeypatch.setattr(checkpoints, "_write_text", real)
    assert main(["--resume", str(root), "stop.iterations=2"]) == 0
    assert checkpoints.find_verified(root).name == "iter_000002"
    assert checkpoints.load_state(root / "iter_000002").iteration == 2
