"""A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) for the PACS tests and the benchmark.

How it is isolated. Orthanc 1.10 binds every interface and has no bind-address option, so it runs
inside a private network namespace (`unshare -n`, loopback up): nothing outside can reach it. A
small forwarder bridges the two namespaces: it opens its listening sockets on 127.0.0.1 in *our*
namespace and relays each connection to Orthanc's HTTP and DICOM ports there, through sockets
that one of its threads makes inside Orthanc's namespace (`setns` on that thread only); for C-MOVE
it also listens inside Orthanc's namespace on `medui_port` (Orthanc's modality MEDUI is
127.0.0.1:medui_port) and relays to MedUI's storage SCP on that port here. Tests, the MedUI
server of the browser test and the benchmark all talk to 127.0.0.1:PORT as to any PACS. Where
namespaces are not permitted (no root, no user namespaces) Orthanc starts normally, on free ports,
with `RemoteAccessAllowed: false` and a DICOM port that accepts only the MEDUI AE from 127.0.0.1.
Storage is a throw-away folder; both processes are stopped by their process ids.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ORTHANC_AET = "ORTHANC"
MEDUI_AET = "MEDUI"
USER, PASSWORD = "medui", "s3cret-pw"
HINT = ("PACS tests need Debian's Orthanc: run `apt-get install orthanc orthanc-dicomweb dicom3tools` "
        "(`make test` installs them when run as root)")

FORWARDER = r"""
import ctypes, os, socket, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
# argv: Orthanc's pid, then F:fd:port (our listener -> Orthanc's port) and R:port:port (a listener in
# Orthanc's namespace -> our 127.0.0.1:port, for C-MOVE back to MedUI)
nsfd = os.open(f"/proc/{sys.argv[1]}/ns/net", os.O_RDONLY)
def enter():  # this thread only: sockets it makes live in Orthanc's namespace
    if ctypes.CDLL(None, use_errno=True).setns(nsfd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
ns = ThreadPoolExecutor(1, initializer=enter)
def in_ns(fn, *args):
    return ns.submit(fn, *args).result()
def listener(port):
    for _ in range(100):  # until Orthanc's loopback is up
        try:
            return socket.create_server(("127.0.0.1", port), backlog=64)
        except OSError:
            time.sleep(0.05)
    raise OSError(f"cannot listen on {port} in Orthanc's namespace")
def pipe(src, dst):
    try:
        while True:
            data = src.recv(262144)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
def serve(lsock, connect):
    while True:
        conn, _ = lsock.accept()
        try:
            up = connect()
        except OSError:
            conn.close()
            continue
        for s in (conn, up):  # small DIMSE messages must not wait for Nagle's algorithm
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()
threads = []
for spec in sys.argv[2:]:
    kind, a, b = spec.split(":")
    if kind == "F":
        args = (socket.socket(fileno=int(a)), lambda port=int(b): in_ns(socket.create_connection, ("127.0.0.1", port)))
    else:
        args = (in_ns(listener, int(a)), lambda port=int(b): socket.create_connection(("127.0.0.1", port)))
    threads.append(threading.Thread(target=serve, args=args))
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

def available() -> bool:
    return shutil.which("Orthanc") is not None and Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Orthanc:
    """A running Orthanc: `url` (HTTP root), `dicomweb` (its DICOMweb base), `dicom_port`, and how to stop it."""

    folder: Path
    http_port: int
    dicom_port: int
    isolated: bool
    auth: bool
    medui_port: int = 0  # where Orthanc sends a C-MOVE to MEDUI (127.0.0.1 here: MedUI's own_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    def rest(self, path: str, data: bytes | None = None, method: str | None = None) -> object:
        """Orthanc's own REST API (with the test credentials when authentication is on)."""
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.auth:
            import base64
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def upload(self, paths: list[Path]) -> None:
        for p in paths:
            self.rest("/instances", p.read_bytes(), "POST")

    def clear(self) -> None:
        for pid in self.rest("/patients"):  # type: ignore[union-attr]
            self.rest(f"/patients/{pid}", method="DELETE")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _config(folder: Path, http: int, dicom: int, auth: bool, medui_port: int) -> Path:
    cfg = {
        "Name": "medui-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http, "DicomPort": dicom, "DicomAet": ORTHANC_AET, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": auth, "RegisteredUsers": {USER: PASSWORD} if auth else {},
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False, "DicomCheckModalityHost": True,
        "DicomCheckCalledAeTitle": True, "DicomScpTimeout": 30, "MaximumPduLength": 131072,
        # MEDUI is a known modality (also the destination of a C-MOVE, at medui_port); moves by unknown AEs are
        # let through so that a move to an unknown destination is refused for that reason (0xA801)
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {"medui": {"AET": MEDUI_AET, "Host": "127.0.0.1", "Port": medui_port, "AllowEcho": True,
                                      "AllowFind": True, "AllowGet": True, "AllowMove": True,
                                      "AllowStore": True}},
        "HttpTimeout": 30, "StableAge": 1, "LimitFindResults": 0, "LimitFindInstances": 0,
        "ConcurrentJobs": 2, "HttpThreadsCount": 8, "SaveJobs": False, "LogExportedResources": False,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


def start(folder: Path, auth: bool = False, isolate: bool | None = None) -> Orthanc:
    """Start Orthanc with throw-away storage under `folder`; returns when its HTTP API answers."""
    folder.mkdir(parents=True, exist_ok=True)
    if isolate is None:  # MEDUI_ORTHANC_NAMESPACE=0 forces the fallback (to test it)
        isolate = os.environ.get("MEDUI_ORTHANC_NAMESPACE", "1") != "0" and _can_unshare()
    http, dicom = (8042, 4242) if isolate else (free_port(), free_port())
    medui_port = free_port()
    cfg = _config(folder, http, dicom, auth, medui_port)
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the process
    # DCMTK (Orthanc's DICOM stack) leaves Nagle's algorithm on unless TCP_NODELAY=1 is in its environment:
    # then each small DIMSE exchange (a C-ECHO, a C-FIND answer) waits ~40 ms for a delayed ACK
    env = {**os.environ, "TCP_NODELAY": "1"}
    server = Orthanc(folder, http, dicom, isolate, auth, medui_port)
    if isolate:
        proc = subprocess.Popen(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec Orthanc {cfg}"],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        server.procs.append(proc)
        listeners = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            listeners.append(s)
        server.http_port, server.dicom_port = (int(s.getsockname()[1]) for s in listeners)
        args = [f"F:{s.fileno()}:{port}" for s, port in zip(listeners, (http, dicom), strict=True)]
        args.append(f"R:{medui_port}:{medui_port}")
        time.sleep(0.05)
        fwd = subprocess.Popen([sys.executable, "-c", FORWARDER, str(proc.pid), *args],
                               pass_fds=[s.fileno() for s in listeners], stdout=log, stderr=subprocess.STDOUT)
        server.procs.append(fwd)
        for s in listeners:
            s.close()
    else:
        server.procs.append(subprocess.Popen(["Orthanc", str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=env))
    deadline = time.time() + 30
    while time.time() < deadline:
        if any(p.poll() is not None for p in server.procs):
            break
        try:
            server.rest("/system")
            return server
        except OSError:
            time.sleep(0.1)
    text = (folder / "orthanc.log").read_text(errors="replace")[-2000:]
    server.stop()
    raise RuntimeError(f"Orthanc did not start: {text}")


def require() -> None:
    """Skip (with how to enable) where Orthanc or dciodvfy is missing."""
    import pytest

    if not available() or shutil.which("dciodvfy") is None:
        pytest.skip(HINT)


def served(tmp_path_factory: object, auth: bool = False):  # type: ignore[no-untyped-def]
    """A generator for a pytest fixture: a started Orthanc, stopped by pid afterwards."""
    require()
    server = start(tmp_path_factory.mktemp("orthanc-auth" if auth else "orthanc"), auth=auth)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def store_series(server: Orthanc, paths: list[Path], patient: tuple[str, str]) -> tuple[str, str, list[Path]]:
    """Give generated files a patient (ID, name) and store them on `server`: (study UID, series UID, paths)."""
    import pydicom

    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientID, ds.PatientName = patient
        ds.save_as(p)
    server.upload(paths)
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), paths


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


if __name__ == "__main__":  # a server for manual checks: python tests/orthanc.py
    srv = start(Path(os.environ.get("ORTHANC_DIR", "/tmp/medui-orthanc")), auth="--auth" in sys.argv)
    print(json.dumps({"dicomweb": srv.dicomweb, "dicom_port": srv.dicom_port, "pid": srv.pid,
                      "isolated": srv.isolated}), flush=True)
    try:
        srv.procs[0].wait()
    finally:
        srv.stop()
