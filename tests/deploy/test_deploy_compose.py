"""docker/docker-compose.yml: the compose-spec schema, memrl's policy, and broken copies failing."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from deploy_validate import (
    COMPOSE_FILE,
    DOCKER_DIR,
    InterpolationError,
    check_compose,
    compose_cli,
    interpolate,
    load_yaml,
    parse_size,
    run_compose_config,
)


def test_committed_compose_file_is_valid() -> None:
    assert check_compose() == []


def test_compose_refuses_to_start_without_a_token() -> None:
    problems = check_compose(env={})
    assert len(problems) == 1
    assert "RAY_AUTH_TOKEN" in problems[0] and "docker/.env" in problems[0]
    # An empty value counts as missing too (":?" form), as in compose.
    assert check_compose(env={"RAY_AUTH_TOKEN": ""}) != []


def _broken_copy(tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    doc = copy.deepcopy(load_yaml(COMPOSE_FILE))
    mutate(doc)
    out = tmp_path / "docker-compose.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _svc(doc: dict, name: str) -> dict:
    return doc["services"][name]


def _set_env(name: str, key: str, value: str) -> Callable[[dict], None]:
    return lambda d: _svc(d, name)["environment"].__setitem__(key, value)


def _replace_arg(name: str, field: str, old: str, new: str) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        svc = _svc(d, name)
        svc[field] = [new if a == old else a for a in svc[field]]
        assert new in svc[field], f"{old!r} not in {name}.{field}"

    return mutate


BROKEN = {
    "unknown service key (typo)": (
        lambda d: _svc(d, "ray-head").__setitem__("shm_sise", "2gb"),
        "shm_sise",
    ),
    "wrong type": (lambda d: _svc(d, "ray-head").__setitem__("ports", "8265:8265"), "ports"),
    "small shm": (lambda d: _svc(d, "ray-worker").__setitem__("shm_size", "64m"), "shm_size"),
    "no shm": (lambda d: _svc(d, "ray-head").pop("shm_size"), "shm_size"),
    "dashboard on all interfaces": (
        lambda d: _svc(d, "ray-head").__setitem__("ports", ["8265:8265"]),
        "127.0.0.1",
    ),
    "tensorboard on all interfaces": (
        lambda d: _svc(d, "tensorboard").__setitem__("ports", ["0.0.0.0:6006:6006"]),
        "6006",
    ),
    "auth disabled": (_set_env("ray-worker", "RAY_AUTH_MODE", "disabled"), "RAY_AUTH_MODE"),
    "literal token": (_set_env("ray-head", "RAY_AUTH_TOKEN", "abc123"), "RAY_AUTH_TOKEN"),
    "optional token": (
        _set_env("submit", "RAY_AUTH_TOKEN", "${RAY_AUTH_TOKEN:-}"),
        "RAY_AUTH_TOKEN",
    ),
    "worker not scalable": (
        lambda d: _svc(d, "ray-worker").__setitem__("container_name", "worker1"),
        "container_name",
    ),
    "worker host port": (
        lambda d: _svc(d, "ray-worker").__setitem__("ports", ["127.0.0.1:8000:8000"]),
        "--scale",
    ),
    "head not blocking": (lambda d: _svc(d, "ray-head")["command"].remove("--block"), "--block"),
    "relative output_dir": (
        _replace_arg("submit", "command", "output_dir=/results", "output_dir=results"),
        "output_dir",
    ),
    "wrong job address": (
        _replace_arg(
            "submit",
            "entrypoint",
            "--address=http://ray-head:8265",
            "--address=http://localhost:8265",
        ),
        "ray-head:8265",
    ),
    "tensorboard reads elsewhere": (
        _replace_arg("tensorboard", "command", "--logdir=/results/runs", "--logdir=/tmp/runs"),
        "logdir",
    ),
    "undeclared volume": (
        lambda d: _svc(d, "tensorboard").__setitem__("volumes", ["other:/results:ro"]),
        "other",
    ),
    "depends on a missing service": (
        lambda d: _svc(d, "submit")["depends_on"].__setitem__(
            "ray-haed", {"condition": "service_started"}
        ),
        "ray-haed",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_copy_fails(tmp_path: Path, case: str) -> None:
    mutate, needle = BROKEN[case]
    problems = check_compose(_broken_copy(tmp_path, mutate))
    assert problems, f"{case}: the broken copy passed validation"
    assert any(needle in p for p in problems), problems


def test_unmodified_copy_passes(tmp_path: Path) -> None:
    # The broken-copy tests are only meaningful if a faithful copy passes.
    assert check_compose(_broken_copy(tmp_path, lambda d: None)) == []


def test_interpolation_follows_compose_rules() -> None:
    env = {"A": "x", "E": ""}
    assert interpolate("${A}-${B}-$A-$$A", env) == "x--x-$A"
    assert interpolate("${B:-d} ${E:-d} ${E-d} ${A:-d}", env) == "d d  x"
    assert interpolate("${A:+alt}|${E:+alt}|${E+alt}|${B+alt}", env) == "alt||alt|"
    assert interpolate({"k": ["${A}", 3]}, env) == {"k": ["x", 3]}
    assert interpolate("${E?e}", env) == ""
    with pytest.raises(InterpolationError, match="B"):
        interpolate("${B?need B}", env)
    with pytest.raises(InterpolationError, match="E"):
        interpolate("${E:?need E}", env)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2gb", 2 * 1024**3),
        ("2g", 2 * 1024**3),
        ("512m", 512 * 1024**2),
        (1024, 1024),
        ("1.5GB", int(1.5 * 1024**3)),
        ("100", 100),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="two gigs"):
        parse_size("two gigs")


def test_env_example_documents_every_variable_and_holds_no_token() -> None:
    example = (DOCKER_DIR / "env.example").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used, "the compose file uses no variables?"
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, flags=re.M))
    assert used <= documented, f"undocumented in env.example: {sorted(used - documented)}"
    # The token line must be present and empty: a committed token would be a shared secret.
    assert re.search(r"^RAY_AUTH_TOKEN=$", example, flags=re.M)


def _need_compose() -> None:
    if compose_cli() is None:
        pytest.skip("no `docker compose` plugin nor docker-compose (v2+) binary on this machine")


@pytest.mark.parametrize("profile", [(), ("--profile", "gpu")], ids=["all", "with-gpu-profile"])
def test_compose_cli_accepts_the_file(profile: tuple[str, ...]) -> None:
    """Compose's own parser (no engine needed): `docker compose config --quiet`."""
    _need_compose()
    res = run_compose_config(COMPOSE_FILE, {"RAY_AUTH_TOKEN": "0" * 64}, *profile)
    assert res.returncode == 0, res.stderr


def test_compose_cli_rejects_a_missing_token() -> None:
    _need_compose()
    res = run_compose_config(COMPOSE_FILE, {})
    assert res.returncode != 0
    assert "RAY_AUTH_TOKEN" in res.stderr


def test_compose_cli_rejects_a_broken_copy(tmp_path: Path) -> None:
    _need_compose()
    broken = _broken_copy(tmp_path, lambda d: _svc(d, "ray-head").__setitem__("shm_sise", "2gb"))
    res = run_compose_config(broken, {"RAY_AUTH_TOKEN": "0" * 64})
    assert res.returncode != 0
    assert "shm_sise" in res.stderr
