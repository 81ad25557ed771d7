"""A real two-node Ray cluster (head + one worker) on this machine, for the Ray tests and the benchmark.

How it is isolated. Where network namespaces are allowed the head starts in a private one (`unshare -n`,
loopback up) and the worker joins it (`nsenter --net=/proc/HEAD/ns/net`): nothing outside can reach either,
and no port of the machine is taken. A forwarder (tests/orthanc.py's) opens the dashboard's port on
127.0.0.1 in *our* namespace and relays it inside, so the Jobs API (all MedUI's server needs) answers at
http://127.0.0.1:PORT. Elsewhere both nodes start on 127.0.0.1 (`--node-ip-address`), on free ports, the
head's GCS port outside the workers' port range. Each node has a temp dir of its own; every process is
stopped by its process id (the `ray start --block` processes, then any process left that belongs to the
cluster's namespace or names its temp dir), never with `ray stop`, which kills every Ray process on the
machine by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.orthanc import FORWARDER, _can_unshare, free_port

HINT = "Ray tests need ray[default]: pip install -r requirements.txt"
WORKER_PORTS = (10002, 19999)  # Ray's default range for worker processes
OBJECT_STORE = 80 * 1024 * 1024  # bytes per node: the tests pass no large objects
# node death noticed in about a second, not Ray's default half minute
FAST_HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_USAGE_STATS_ENABLED": "0"}


def available() -> bool:
    try:
        import ray
        import ray.job_submission  # noqa: F401
    except ImportError:
        return False
    return True


def _ports(n: int, taken: set[int]) -> list[int]:
    """n distinct free ports outside the workers' port range."""
    out: list[int] = []
    while len(out) < n:
        port = free_port()
        if port not in taken and not WORKER_PORTS[0] <= port <= WORKER_PORTS[1]:
            taken.add(port)
            out.append(port)
    return out


def _node_args(temp: Path, taken: set[int], cpus: int) -> list[str]:
    om, nm, rt, dl, dg, me = _ports(6, taken)
    return ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", "0",
            "--object-store-memory", str(OBJECT_STORE), "--temp-dir", str(temp), "--object-manager-port", str(om),
            "--node-manager-port", str(nm), "--runtime-env-agent-port", str(rt), "--dashboard-agent-listen-port",
            str(dl), "--dashboard-agent-grpc-port", str(dg), "--metrics-export-port", str(me),
            "--disable-usage-stats", "--block"]


@dataclass
class RayCluster:
    """A running two-node cluster: `dashboard` (the Jobs API, reachable from here), `gcs` (the address the
    nodes use), the `ray start --block` process of each node, and how to stop them."""

    folder: Path
    isolated: bool
    dashboard: str = ""
    gcs: str = ""
    head: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)

    def _ours(self) -> list[int]:
        """Every live process of the cluster: in its namespace, or naming one of its temp dirs."""
        ns = _netns(self.head.pid) if self.isolated and self.head else None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
                mine = (ns is not None and _netns(int(entry.name)) == ns) or any(str(t) in cmd for t in self.temps)
            except OSError:
                continue
            if mine:
                found.append(int(entry.name))
        return found

    def raylet_pid(self, node: str = "worker") -> int:
        """The process id of a node's raylet (killing it kills the node)."""
        temp = self.temps[1 if node == "worker" else 0]
        for pid in self._ours():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if cmd and cmd[0].endswith(b"/raylet") and any(str(temp).encode() in c for c in cmd):
                    return pid
        raise AssertionError(f"no raylet of the {node} node is running")

    def pids(self, node: str = "worker") -> list[int]:
        """The processes a node's raylet started (its Ray workers, agents), none once the node is gone."""
        try:
            root = self.raylet_pid(node)
        except AssertionError:
            return []
        parent: dict[int, int] = {}
        for pid in self._ours():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        found, grew = {root}, True
        while grew:
            more = {p for p, pp in parent.items() if pp in found} - found
            found |= more
            grew = bool(more)
        return sorted(found - {root})

    def worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def stop(self) -> None:
        for proc in (self.worker, self.head, *self.procs):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (self.worker, self.head, *self.procs):
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for pid in self._ours():  # stragglers (workers, agents) of this cluster only, by pid
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _ray() -> list[str]:
    return [str(Path(sys.executable).with_name("ray"))]


def start(folder: Path, head_cpus: int = 1, worker_cpus: int = 1, isolate: bool | None = None) -> RayCluster:
    """Start the head and one worker; returns when the Jobs API answers and both nodes are alive."""
    folder.mkdir(parents=True, exist_ok=True)
    if isolate is None:  # MEDUI_RAY_NAMESPACE=0 forces the fallback (to test it)
        isolate = os.environ.get("MEDUI_RAY_NAMESPACE", "1") != "0" and _can_unshare()
    cluster = RayCluster(folder, isolate)
    # short temp dirs: Ray's unix socket paths must stay under 108 characters
    cluster.temps = [Path(tempfile.mkdtemp(prefix="mr-h")), Path(tempfile.mkdtemp(prefix="mr-w"))]
    taken: set[int] = set()
    gcs_port, dash_port, client_port = _ports(3, taken)
    env = {**os.environ, **FAST_HEALTH}
    env.pop("RAY_ADDRESS", None)
    head_args = [*_ray(), "start", "--head", "--port", str(gcs_port), "--dashboard-host", "127.0.0.1",
                 "--dashboard-port", str(dash_port), "--ray-client-server-port", str(client_port),
                 "--include-dashboard", "true", *_node_args(cluster.temps[0], taken, head_cpus)]
    cluster.gcs = f"127.0.0.1:{gcs_port}"
    worker_args = [*_ray(), "start", "--address", cluster.gcs, *_node_args(cluster.temps[1], taken, worker_cpus)]
    head_log, worker_log = open(folder / "head.log", "wb"), open(folder / "worker.log", "wb")  # noqa: SIM115
    try:
        if isolate:
            line = "ip link set lo up && exec " + " ".join(_quote(a) for a in head_args)
            cluster.head = subprocess.Popen(["unshare", "-n", "sh", "-c", line], env=env, stdout=head_log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            _wait_gcs(cluster, gcs_port)
            cluster.worker = subprocess.Popen(["nsenter", f"--net=/proc/{cluster.head.pid}/ns/net", *worker_args],
                                              env=env, stdout=worker_log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
            cluster.dashboard = _forward(cluster, dash_port, head_log)
        else:
            cluster.head = subprocess.Popen(head_args, env=env, stdout=head_log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
            _wait_gcs(cluster, gcs_port)
            cluster.worker = subprocess.Popen(worker_args, env=env, stdout=worker_log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
            cluster.dashboard = f"http://127.0.0.1:{dash_port}"
        _wait_ready(cluster)
    except BaseException:
        cluster.stop()
        raise
    finally:
        head_log.close()
        worker_log.close()
    return cluster


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _forward(cluster: RayCluster, port: int, log: object) -> str:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    outside = int(listener.getsockname()[1])
    assert cluster.head is not None
    # FORWARDER's argv: the pid whose network namespace it enters, then F:fd:port per forwarded port
    cluster.procs.append(subprocess.Popen(
        [sys.executable, "-c", FORWARDER, str(cluster.head.pid), f"F:{listener.fileno()}:{port}"],
        pass_fds=[listener.fileno()], stdout=log, stderr=subprocess.STDOUT))  # type: ignore[arg-type]
    listener.close()
    return f"http://127.0.0.1:{outside}"


def _log(cluster: RayCluster) -> str:
    return "\n".join(f"--- {name}\n" + (cluster.folder / name).read_text(errors="replace")[-3000:]
                     for name in ("head.log", "worker.log"))


def _wait_gcs(cluster: RayCluster, port: int, timeout: float = 60) -> None:
    """Until the head's GCS port is open (seen from the head's namespace)."""
    assert cluster.head is not None
    prefix = ["nsenter", f"--net=/proc/{cluster.head.pid}/ns/net"] if cluster.isolated else []
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cluster.head.poll() is not None:
            raise RuntimeError(f"the Ray head exited early:\n{_log(cluster)}")
        if subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"the Ray head's GCS did not open port {port} in {timeout} s:\n{_log(cluster)}")


def _wait_ready(cluster: RayCluster, timeout: float = 90) -> None:
    """Until the Jobs API answers and lists two alive nodes."""
    import json

    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in (cluster.head, cluster.worker):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"a Ray node exited early:\n{_log(cluster)}")
        try:
            with urllib.request.urlopen(cluster.dashboard + "/nodes?view=summary", timeout=3) as resp:
                data = json.loads(resp.read())
            nodes = data.get("data", {}).get("summary", [])
            if sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE") >= 2:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Ray cluster was not ready in {timeout} s:\n{_log(cluster)}")


def served(tmp_path_factory: object) -> Iterator[RayCluster]:
    """A generator for a pytest fixture: a started two-node cluster, stopped by pid afterwards."""
    import pytest

    if not available():
        pytest.skip(HINT)
    cluster = start(tmp_path_factory.mktemp("ray"))  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        cluster.stop()


if __name__ == "__main__":  # a cluster for manual checks: python -m tests.ray_cluster
    t0 = time.time()
    c = start(Path(os.environ.get("RAY_TEST_DIR", "/tmp/medui-ray")))
    print({"dashboard": c.dashboard, "gcs": c.gcs, "isolated": c.isolated, "start_s": round(time.time() - t0, 1),
           "worker_raylet": c.raylet_pid(), "head_raylet": c.raylet_pid("head")}, flush=True)
    try:
        if "--wait" in sys.argv:
            c.head.wait()  # type: ignore[union-attr]
    finally:
        c.stop()
