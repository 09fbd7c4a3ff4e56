"""cluster/: the `ray up` config against Ray's schema, and the KubeRay manifests against the
Kubernetes strict schemas plus the KubeRay subset schema; broken copies must fail."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable

import pytest
from deploy_validate import (
    CLUSTER_LAUNCHER_FILE,
    KUBERAY_FILES,
    check_cluster_launcher,
    check_kubernetes,
    load_yaml,
    load_yaml_all,
)

RAYCLUSTER_FILE, RAYJOB_FILE = KUBERAY_FILES


@pytest.fixture(autouse=True)
def _quiet_ray_autoscaler() -> None:
    # prepare_config logs one INFO line per head node type; keep test output readable.
    logging.getLogger("ray.autoscaler").setLevel(logging.WARNING)


# ----------------------------------------------------------------------------------------------
# ray up (cluster launcher)


def test_committed_cluster_launcher_config_is_valid() -> None:
    assert check_cluster_launcher() == []


def _types(c: dict) -> dict:
    return c["available_node_types"]


def _drop_auth_mode(c: dict) -> None:
    c["worker_start_ray_commands"] = [
        cmd.replace("RAY_AUTH_MODE=token ", "") for cmd in c["worker_start_ray_commands"]
    ]


def _swap_install_order(c: dict) -> None:
    cmds = c["worker_setup_commands"]
    t = next(i for i, x in enumerate(cmds) if "torch==" in x)
    m = next(i for i, x in enumerate(cmds) if "-e ~/memrl" in x)
    cmds[t], cmds[m] = cmds[m], cmds[t]


LAUNCHER_BROKEN: dict[str, tuple[Callable[[dict], None], str]] = {
    "typo in a node type (ray schema)": (
        lambda c: _types(c)["worker.cpu"].__setitem__("min_worker", 1),
        "min_worker",
    ),
    "unknown top-level key (ray schema)": (
        lambda c: c.__setitem__("setup_command", []),
        "setup_command",
    ),
    "wrong type (ray schema)": (lambda c: c.__setitem__("max_workers", "ten"), "ten"),
    "head type not defined": (
        lambda c: c.__setitem__("head_node_type", "head.cpu"),
        "head_node_type",
    ),
    "min_workers above the global max": (
        lambda c: _types(c)["worker.cpu"].__setitem__("min_workers", 50),
        "max_workers",
    ),
    "min above max for a type": (
        lambda c: _types(c)["worker.gpu"].update(min_workers=2, max_workers=1),
        "min_workers 2 > max_workers 1",
    ),
    "head without GPU": (
        lambda c: _types(c)["head.gpu"].__setitem__("resources", {"CPU": 8}),
        "GPU",
    ),
    "no CPU worker type": (lambda c: _types(c).pop("worker.cpu"), "CPU-only"),
    "worker without token auth": (_drop_auth_mode, "RAY_AUTH_MODE=token"),
    "token not shipped": (lambda c: c["file_mounts"].pop("~/.ray/auth_token"), "auth_token"),
    "memrl before torch": (_swap_install_order, "before torch"),
    "GPU worker with the CPU wheel": (
        lambda c: _types(c)["worker.gpu"].__setitem__(
            "worker_setup_commands",
            [
                x.replace("whl/cu130", "whl/cpu")
                for x in _types(c)["worker.gpu"]["worker_setup_commands"]
            ],
        ),
        "CPU torch wheel",
    ),
}


@pytest.mark.parametrize("case", sorted(LAUNCHER_BROKEN))
def test_broken_cluster_launcher_config_fails(case: str) -> None:
    mutate, needle = LAUNCHER_BROKEN[case]
    cfg = copy.deepcopy(load_yaml(CLUSTER_LAUNCHER_FILE))
    mutate(cfg)
    problems = check_cluster_launcher(config=cfg)
    assert any(needle in p for p in problems), problems


def test_cluster_launcher_installs_the_pinned_versions() -> None:
    """The nodes get the same torch as the images, and memrl brings ray 2.60 (pyproject pin)."""
    cfg = load_yaml(CLUSTER_LAUNCHER_FILE)
    dockerfile = (CLUSTER_LAUNCHER_FILE.parents[1] / "docker" / "Dockerfile").read_text()
    torch_v = re.search(r"torch==([\w.]+)", dockerfile).group(1)
    cmds = cfg["head_setup_commands"] + cfg["worker_setup_commands"]
    pins = {m for c in cmds for m in re.findall(r"torch==([\w.]+)", c)}
    assert pins == {torch_v}
    pyproject = (CLUSTER_LAUNCHER_FILE.parents[1] / "pyproject.toml").read_text()
    assert re.search(r'"ray\[[^\]]*\]>=2\.60,<2\.61"', pyproject)


# ----------------------------------------------------------------------------------------------
# KubeRay


def test_committed_kuberay_manifests_are_valid() -> None:
    assert check_kubernetes() == []


def _docs() -> list[tuple[str, dict]]:
    return [(f"{p.name}[{i}]", d) for p in KUBERAY_FILES for i, d in enumerate(load_yaml_all(p))]


def _find(docs: list[tuple[str, dict]], kind: str) -> dict:
    return next(d for _, d in docs if d["kind"] == kind)


def _cluster(docs: list[tuple[str, dict]]) -> dict:
    return _find(docs, "RayCluster")["spec"]


def _head_container(docs: list[tuple[str, dict]]) -> dict:
    return _cluster(docs)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _group(docs: list[tuple[str, dict]], name: str) -> dict:
    return next(g for g in _cluster(docs)["workerGroupSpecs"] if g["groupName"] == name)


def _worker_container(docs: list[tuple[str, dict]], name: str = "envrunners") -> dict:
    return _group(docs, name)["template"]["spec"]["containers"][0]


def _set_token_literal(docs: list[tuple[str, dict]]) -> None:
    env = _worker_container(docs)["env"]
    for e in env:
        if e["name"] == "RAY_AUTH_TOKEN":
            e.pop("valueFrom")
            e["value"] = "abc"


def _drop_env(name: str, where: Callable[[list], dict]) -> Callable[[list], None]:
    def mutate(docs: list[tuple[str, dict]]) -> None:
        c = where(docs)
        c["env"] = [e for e in c["env"] if e["name"] != name]

    return mutate


def _drop_shm(docs: list[tuple[str, dict]]) -> None:
    c = _worker_container(docs)
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/dev/shm"]


def _submitter(docs: list[tuple[str, dict]]) -> dict:
    return _find(docs, "RayJob")["spec"]["submitterPodTemplate"]["spec"]["containers"][0]


KUBERAY_BROKEN: dict[str, tuple[Callable[[list], None], str]] = {
    "typo in RayCluster spec (subset schema)": (
        lambda d: _cluster(d).__setitem__("workerGroupSpec", []),
        "workerGroupSpec",
    ),
    "typo in a worker group (subset schema)": (
        lambda d: _group(d, "envrunners").__setitem__("maxReplica", 3),
        "maxReplica",
    ),
    "wrong apiVersion": (
        lambda d: _find(d, "RayCluster").__setitem__("apiVersion", "ray.io/v1alpha1"),
        "ray.io/v1",
    ),
    "typo inside a pod template (k8s strict schema)": (
        lambda d: _worker_container(d).__setitem__("resource", {}),
        "resource",
    ),
    "wrong type inside a pod template (k8s schema)": (
        lambda d: _head_container(d).__setitem__("ports", {"containerPort": 8265}),
        "ports",
    ),
    "bad env entry in the autoscaler (k8s schema)": (
        lambda d: _cluster(d)["autoscalerOptions"]["env"].append({"value": "x"}),
        "name",
    ),
    "bad upscalingMode": (
        lambda d: _cluster(d)["autoscalerOptions"].__setitem__("upscalingMode", "Fast"),
        "Fast",
    ),
    "PVC typo (kubernetes-validate)": (
        lambda d: _find(d, "PersistentVolumeClaim")["spec"].__setitem__("accesModes", ["x"]),
        "accesModes",
    ),
    "literal token": (_set_token_literal, "never a literal"),
    "worker without auth mode": (
        _drop_env("RAY_AUTH_MODE", lambda d: _worker_container(d)),
        "RAY_AUTH_MODE",
    ),
    "autoscaler without token": (
        _drop_env("RAY_AUTH_TOKEN", lambda d: _cluster(d)["autoscalerOptions"]),
        "autoscaler",
    ),
    "submitter without token": (_drop_env("RAY_AUTH_TOKEN", _submitter), "submitter"),
    "no /dev/shm": (_drop_shm, "/dev/shm"),
    "no memory limit": (
        lambda d: _worker_container(d)["resources"]["limits"].pop("memory"),
        "limits.memory",
    ),
    "bad quantity": (
        lambda d: _worker_container(d)["resources"]["requests"].__setitem__("cpu", "8 cores"),
        "quantity",
    ),
    "CPU group takes a GPU": (
        lambda d: _worker_container(d)["resources"]["limits"].__setitem__("nvidia.com/gpu", "1"),
        "CPU-only worker group",
    ),
    "no GPU anywhere": (
        lambda d: [
            c["resources"][k].pop("nvidia.com/gpu", None)
            for c in (_head_container(d), _worker_container(d, "learners"))
            for k in ("requests", "limits")
        ],
        "GPU",
    ),
    "replicas above max": (
        lambda d: _group(d, "envrunners").__setitem__("replicas", 99),
        "replicas outside",
    ),
    "root allowed": (
        lambda d: _group(d, "envrunners")["template"]["spec"].pop("securityContext"),
        "runAsNonRoot",
    ),
    "job without an absolute output_dir": (
        lambda d: _find(d, "RayJob")["spec"].__setitem__(
            "entrypoint", "python -m memrl.train tmaze/gru output_dir=results"
        ),
        "output_dir",
    ),
    "job without submitter template": (
        lambda d: _find(d, "RayJob")["spec"].pop("submitterPodTemplate"),
        "submitterPodTemplate",
    ),
}


@pytest.mark.parametrize("case", sorted(KUBERAY_BROKEN))
def test_broken_kuberay_manifest_fails(case: str) -> None:
    mutate, needle = KUBERAY_BROKEN[case]
    docs = copy.deepcopy(_docs())
    mutate(docs)
    problems = check_kubernetes(docs=docs)
    assert any(needle in p for p in problems), problems


def test_operator_managed_auth_is_accepted() -> None:
    """With spec.authOptions.mode=token (KubeRay >= 1.5.1) the env vars may be left out."""
    docs = copy.deepcopy(_docs())
    _drop_env("RAY_AUTH_TOKEN", lambda d: _worker_container(d))(docs)
    assert check_kubernetes(docs=docs) != []
    _cluster(docs)["authOptions"] = {"mode": "token"}
    assert check_kubernetes(docs=docs) == []


def test_rayjob_runs_the_same_cluster_as_the_raycluster() -> None:
    """Images, token Secret and the CPU/GPU split agree between the two manifests."""
    cluster = load_yaml_all(RAYCLUSTER_FILE)[-1]["spec"]
    job = load_yaml_all(RAYJOB_FILE)[-1]["spec"]["rayClusterSpec"]

    def images(spec: dict) -> dict[str, str]:
        out = {"head": spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]}
        for g in spec["workerGroupSpecs"]:
            out[g["groupName"]] = g["template"]["spec"]["containers"][0]["image"]
        return out

    ci, ji = images(cluster), images(job)
    assert ci["head"] == ji["head"] and ci["head"].endswith(":cuda")
    assert ci["envrunners"] == ji["envrunners"] and ci["envrunners"].endswith(":cpu")

    def secrets(doc: object) -> set[str]:
        found: set[str] = set()
        if isinstance(doc, dict):
            if "secretKeyRef" in doc:
                found.add(doc["secretKeyRef"]["name"])
            for v in doc.values():
                found |= secrets(v)
        elif isinstance(doc, list):
            for v in doc:
                found |= secrets(v)
        return found

    all_secrets = secrets(load_yaml_all(RAYCLUSTER_FILE)) | secrets(load_yaml_all(RAYJOB_FILE))
    assert all_secrets == {"memrl-ray-auth"}
    # The documented `kubectl create secret` line creates exactly that Secret and key.
    for path in KUBERAY_FILES:
        assert "kubectl create secret generic memrl-ray-auth --from-literal=auth_token=" in (
            path.read_text()
        )
    assert cluster["rayVersion"] == job["rayVersion"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
