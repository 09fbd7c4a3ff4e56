"""Helpers for the scale tests: a private multi-node Ray cluster on this machine, process cleanup.

Other people's Ray instances may run on the same machine, so nothing here uses ``ray stop``
(it stops every Ray of the user). Each node is a ``ray start --block`` process in a session of
its own; teardown signals that process (which stops the node's daemons), then kills whatever
is left in its session, and every process whose command line names the cluster's temp dir.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, session id, parent pid) of ``pid`` from /proc (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[3]), int(fields[1])


def descendants(pid: int) -> list[int]:
    """PIDs of every live process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        st = _stat(p)
        if st is not None and st[0] != "Z":
            children.setdefault(st[2], []).append(p)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def session_processes(sid: int) -> list[int]:
    """PIDs of every live process in session ``sid``."""
    return [pid for pid in _pids() if (st := _stat(pid)) and st[1] == sid and st[0] != "Z"]


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def processes_mentioning(text: str) -> list[int]:
    """PIDs of every live process whose command line contains ``text``."""
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and alive(pid) and text in cmdline(pid)]


def kill_processes(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM ``pids``, then SIGKILL the ones still alive after ``timeout`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)
        pids = [p for p in pids if alive(p)]
        if not pids:
            return


def kill_session(leader: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop ``leader`` (started with ``start_new_session=True``) and everything in its session."""
    sid = leader.pid
    if leader.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leader.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout)
    if leader.poll() is None:
        leader.kill()
        leader.wait(timeout)
    kill_processes(session_processes(sid), timeout)


@dataclass
class LocalCluster:
    """A head node and worker nodes on 127.0.0.1, token auth on, in a private temp dir.

    ``env`` is what a client needs to talk to it (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN, the venv
    first on PATH so that a job's ``python`` is the venv's).
    """

    root: Path
    token: str
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    nodes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def address(self) -> str:
        """GCS address (for ``ray start --address`` and ``ray.init``)."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """Job-submission (dashboard) address."""
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_node(self, name: str, args: list[str], ready_timeout: float = 90.0) -> None:
        """``ray start --block`` with ``args``; returns once the node's raylet is up."""
        log = (self.root / f"{name}.log").open("w")
        cmd = [str(VENV_BIN / "ray"), "start", "--block", "--disable-usage-stats", *args]
        proc = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.nodes.append(proc)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            text = (self.root / f"{name}.log").read_text(errors="replace")
            if "block forever" in text:  # printed once every daemon of the node has started
                return
            if proc.poll() is not None:
                raise RuntimeError(f"ray start ({name}) exited {proc.returncode}:\n{text}")
            time.sleep(0.5)
        raise TimeoutError(f"ray start ({name}) not ready in {ready_timeout}s:\n{text}")

    def wait_for_nodes(self, count: int, timeout: float = 60.0) -> None:
        """Block until ``count`` nodes are alive, as the GCS sees them."""
        code = (
            "import ray, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            "print(sum(n['Alive'] for n in ray.nodes()))\n"
        )
        deadline = time.monotonic() + timeout
        alive = 0
        while time.monotonic() < deadline:
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            lines = out.stdout.strip().splitlines()
            alive = int(lines[-1]) if out.returncode == 0 and lines else 0
            if alive >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{alive} of {count} Ray nodes alive after {timeout}s")

    def stop(self) -> None:
        """Stop every node (newest first) and any straggler naming this cluster's temp dir."""
        for proc in reversed(self.nodes):
            kill_session(proc)
        kill_processes(processes_mentioning(str(self.root)))


@contextlib.contextmanager
def local_cluster(worker_nodes: int = 1, cpus_per_node: int = 1) -> Iterator[LocalCluster]:
    """A head plus ``worker_nodes`` workers (each ``cpus_per_node`` CPUs), stopped on exit.

    The temp dir is short (``/tmp/mrl-XXXX``): Ray's Unix socket paths under it must fit in 107
    bytes. Worker nodes carry the custom resource ``worker_node``.
    """
    root = Path(tempfile.mkdtemp(prefix="mrl-", dir="/tmp"))
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    cluster = LocalCluster(
        root=root, token=token, gcs_port=free_port(), dashboard_port=free_port(), env=env
    )
    try:
        common = ["--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}"]
        cluster.start_node(
            "head",
            [
                "--head",
                f"--port={cluster.gcs_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={cluster.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--temp-dir={root / 'head'}",
                *common,
            ],
        )
        for i in range(worker_nodes):
            cluster.start_node(
                f"worker{i}",
                [
                    f"--address={cluster.address}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    f"--temp-dir={root / f'w{i}'}",
                    '--resources={"worker_node": 1}',
                    *common,
                ],
            )
        cluster.wait_for_nodes(1 + worker_nodes)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
