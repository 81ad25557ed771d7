"""Training folders on the server: files (links included) must resolve inside MEDUI_DATA_ROOTS; pipes,
sockets, devices and kernel files are skipped; listings are bounded and cancellable; an unreadable folder
is a message; and a per-patient layout leaves no folder or file name in any job file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from medui.errors import DatasetError, DatasetScanError, ServerFolderError
from medui.synthetic.phantoms import make_phantom, write_png
from medui.training.data import index_dataset, split
from medui.training.folders import ScanLimits
from medui.usecases.train import allowed_folder, check_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_hang():
    """A listing that opens a pipe would wait for ever: fail instead."""
    def stop(*_):
        raise TimeoutError("the listing hung (opened a pipe or a device?)")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _dataset(root: Path, n: int = 8) -> Path:
    for k in range(n):
        write_png(make_phantom(k, 48, lesion=k % 2 == 1), root / ("lesion" if k % 2 else "normal") / f"p{k}.png")
    return root


def test_file_links_out_of_the_roots_are_not_read(tmp_path, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")  # not inside MEDUI_DATA_ROOTS (the isolated data folder, tmp_path)
    secret = outside / "secret.png"
    write_png(make_phantom(50, 48, lesion=True), secret)
    root = _dataset(tmp_path / "set")
    (root / "lesion" / "stolen.png").symlink_to(secret)
    (root / "lesion" / "inside.png").symlink_to(root / "lesion" / "p1.png")  # a link inside the root is fine
    (root / "normal" / "escape").symlink_to(outside, target_is_directory=True)
    index, thumbs = check_dataset(root, min_per_class=2)
    files = [s.file for s in index.samples]
    assert "set/lesion/inside.png" in files and not any("stolen" in f or "escape" in f for f in files)
    assert len(index.samples) == 9 and sum(len(v) for v in thumbs.values()) == 8
    reasons = {u["file"]: u["reason"] for u in index.report.unreadable}
    assert "outside the folders this server allows" in reasons["set/lesion/stolen.png"]
    assert "links to folders are not followed" in reasons["set/normal/escape/"]
    # a folder of nothing but such links: a message listing them, not a traceback
    only = tmp_path / "links"
    for k in range(4):
        (only / ("lesion" if k % 2 else "normal")).mkdir(parents=True, exist_ok=True)
        (only / ("lesion" if k % 2 else "normal") / f"x{k}.png").symlink_to(secret)
    with pytest.raises(DatasetError, match="no files that can be read") as refused:
        check_dataset(only, min_per_class=1)
    assert len(refused.value.unreadable) == 4
    # a folder given through a link that leads out of the roots is refused as a whole
    (tmp_path / "door").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ServerFolderError, match="outside the folders"):
        allowed_folder(str(tmp_path / "door"))
    with pytest.raises(DatasetScanError, match="outside the folders"):
        check_dataset(tmp_path / "door")


def test_pipes_sockets_devices_and_kernel_files_are_skipped(tmp_path):
    root = _dataset(tmp_path / "set")
    os.mkfifo(root / "normal" / "pipe.png")  # opening it would wait for a writer for ever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "lesion" / "sock.png"))
    (root / "lesion" / "zero.png").symlink_to("/dev/zero")
    (root / "lesion" / "environ.png").symlink_to("/proc/self/environ")
    try:
        index, _ = check_dataset(root, min_per_class=2)
    finally:
        server.close()
    assert len(index.samples) == 8
    reasons = {u["file"]: u["reason"] for u in index.report.unreadable}
    assert "not a regular file" in reasons["set/normal/pipe.png"]
    assert "not a regular file" in reasons["set/lesion/sock.png"]
    assert "outside" in reasons["set/lesion/zero.png"] and "outside" in reasons["set/lesion/environ.png"]


def test_kernel_file_systems_and_huge_trees_are_refused_quickly(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDUI_DATA_ROOTS", "/")  # an administrator who allowed everything
    for folder in ("/proc/self", "/proc", "/sys", "/dev"):
        with pytest.raises(ServerFolderError, match="kernel or device file system"):
            allowed_folder(folder)
        with pytest.raises(DatasetScanError, match="kernel file system"):
            check_dataset(Path(folder))
    # '/' itself: the listing stops at its bound (and never enters /proc), with a message
    with pytest.raises(DatasetScanError, match="MEDUI_MAX_SCAN_ENTRIES"):
        check_dataset(Path("/"), scan=ScanLimits(max_entries=3000))
    # a deep tree of empty folders: bounded in entries, in time, and cancellable
    tree = tmp_path / "tree"
    for a in range(30):
        for b in range(10):
            (tree / f"a{a}" / f"b{b}").mkdir(parents=True)
    with pytest.raises(DatasetScanError, match="more than 100 files and folders"):
        index_dataset([tree], scan=ScanLimits(max_entries=100))
    with pytest.raises(DatasetScanError, match="took more than 0 s"):
        index_dataset([tree], scan=ScanLimits(max_seconds=0.0))
    asked = []
    with pytest.raises(DatasetScanError, match="cancelled"):
        index_dataset([tree], scan=ScanLimits(cancelled=lambda: asked.append(1) or len(asked) > 5))
    with pytest.raises(DatasetScanError, match="more than 4 files"):
        index_dataset([_dataset(tmp_path / "set")], scan=ScanLimits(max_files=4))


_UNREADABLE = """
import json, sys
from pathlib import Path
from medui.errors import MedUIError
from medui.usecases.train import allowed_folder, check_dataset
out = {}
try:
    allowed_folder(sys.argv[1] + "/set/normal/locked")
except MedUIError as exc:
    out["allowed"] = str(exc)
index, _ = check_dataset(Path(sys.argv[1]) / "set", min_per_class=2)
out["samples"] = len(index.samples)
out["unreadable"] = index.report.unreadable
print(json.dumps(out))
"""


def test_an_unreadable_folder_is_a_message(tmp_path, isolated):
    """Run where the folder is closed: root reads everything, so then without its capability to
    (`setpriv`, util-linux), as a server's service account would."""
    root = _dataset(tmp_path / "set")
    locked = root / "normal" / "locked"
    write_png(make_phantom(9, 48, lesion=False), locked / "hidden.png")
    locked.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: a closed folder cannot be made")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", _UNREADABLE, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = json.loads(done.stdout)
    assert "cannot be read by the server" in out["allowed"]
    assert out["samples"] == 8
    assert [u["file"] for u in out["unreadable"]] == ["set/normal/locked/"]
    assert "could not be listed (Permission denied)" in out["unreadable"][0]["reason"]


def test_a_per_patient_layout_leaves_no_folder_name_in_any_job_file(tmp_path, isolated, monkeypatch):
    from medui.training import jobs, metrics, runs
    from medui.training.fit import TrainConfig

    monkeypatch.setattr(metrics, "calibration_check", lambda t, p: None)  # so tiny a model may fail it: not here
    root = tmp_path / "export"
    ids = [f"QZMRN{k:04d}" for k in range(12)]
    for k in range(24):
        pid = ids[k // 2]
        label = "pneumonia" if (k // 2) % 2 else "normal"
        write_png(make_phantom(k, 48, lesion=label == "pneumonia"), root / label / pid / "study1" / f"{pid}_{k}.png")
    index, _ = check_dataset(root, min_per_class=5)
    assert index.report.grouping == "first folder below the class folder"
    again, _ = check_dataset(root, min_per_class=5)  # stable: the same folder, the same pseudonyms
    assert [index.job_name(s) for s in index.samples] == [again.job_name(s) for s in again.samples]
    assert [s.patient for s in index.samples] == [s.patient for s in again.samples]
    cfg = TrainConfig(data=[str(root)], out="perpatient", arch="seed_cnn", epochs=1, batch_size=8, min_per_class=5,
                      weights=None, val_fraction=0.25, test_fraction=0.25)
    job = jobs.create(cfg.to_json(), index=index)
    assert runs.run_job(job.path) == 0, job.status()
    written = {p: p.read_bytes().lower() for p in isolated["jobs"].rglob("*") if p.is_file()}
    assert job.path / "split.json" in written and job.path / "index.json" in written
    for pid in ids:
        assert not [str(p) for p, data in written.items() if pid.lower().encode() in data or pid.lower() in
                    str(p).lower()], pid
    assert not any(b"study1" in data for data in written.values())
    # split.json names each image relative to the dataset, pseudonymous below the class folder, patients apart
    doc = json.loads((job.path / "split.json").read_text())
    patients = {part: {f.split("/")[2] for f in doc["files"][part]} for part in ("train", "val", "test")}
    assert all(doc["files"][part] for part in patients) and all(len(doc["files"][p]) == len(doc[p]) for p in patients)
    assert not (patients["train"] & patients["val"]) and not (patients["train"] & patients["test"])
    assert all(f.startswith(("export/normal/", "export/pneumonia/")) and f.endswith(".png")
               for part in patients for f in doc["files"][part])
    assert split(index, 0.25, 0.25, cfg.seed) == {k: doc[k] for k in ("train", "val", "test")}
    salt = isolated["jobs"] / jobs.SALT_FILE
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600 and len(bytes.fromhex(salt.read_text().strip())) == 32


def test_the_salt_is_made_once_and_a_damaged_one_is_a_message(isolated):
    from medui.errors import JobFolderError
    from medui.training.jobs import SALT_FILE, installation_salt

    first = installation_salt()
    assert installation_salt() == first and len(first) == 32
    (isolated["jobs"] / SALT_FILE).write_text("not hex")
    with pytest.raises(JobFolderError, match="does not hold a pseudonym salt"):
        installation_salt()
