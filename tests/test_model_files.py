"""Hostile `.keras` files (made here) are refused before Keras opens them, through the use cases the
Models page calls and through `python -m medui models register`: quickly, in little memory, with a
message that names the user's file and no server path, and the registry unchanged."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from medui.ai import modelfile
from medui.errors import ModelFileError, ModelLoadError
from medui.usecases.models import CardFields, inspect_upload, register_upload

ROOT = Path(__file__).resolve().parents[1]
FIELDS = CardFields(name="up", class_names=("normal", "abnormal"), cam_layer="", threshold=0.5)
MAX_RSS_MB = 200  # the bound; before the check a declared 2 GiB config.json took 4.9 GB
MAX_CLI_S = 20.0  # the whole command, interpreter start included, on a shared machine (the check itself: ms)


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory) -> bytes:
    from medui.ai.architectures import build

    path = tmp_path_factory.mktemp("m") / "m.keras"
    build("seed_cnn").model.save(path)
    return path.read_bytes()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name as given ('/x', '../x')
    return out.getvalue()


def _declare(data: bytes, member: str, size: int) -> bytes:
    """The zip with `member`'s uncompressed size in its local and central headers replaced by `size`."""
    raw = bytearray(data)
    name = member.encode()
    for sig, size_at, name_len_at, header in ((b"PK\x01\x02", 24, 28, 46), (b"PK\x03\x04", 22, 26, 30)):
        at = raw.find(sig)
        while at >= 0:
            n = struct.unpack_from("<H", raw, at + name_len_at)[0]
            if bytes(raw[at + header:at + header + n]) == name:
                struct.pack_into("<I", raw, at + size_at, size)
            at = raw.find(sig, at + 4)
    return bytes(raw)


def _bomb(members: dict[str, bytes], member: str, inflated: int) -> bytes:
    """The zip with `member` replaced by `inflated` zero bytes, deflated (about 1000 times smaller)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            if name != member:
                zf.writestr(name, data)
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as w:
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                w.write(chunk)
    return out.getvalue()


HOSTILE = {  # what the trial uploaded, and more: each must be refused before Keras opens it
    "traversal": lambda real: _zip({**real, "../../x": b"owned"}),
    "absolute": lambda real: _zip({**real, "/etc/cron.d/x": b"owned"}),
    "extra-member": lambda real: _zip({**real, "evil.py": b"import os"}),
    "config-declares-2GiB": lambda real: _declare(_zip(real), "config.json", 2**31 - 1),
    "config-bomb": lambda real: _bomb(real, "config.json", 64 << 20),
    "weights-bomb": lambda real: _bomb(real, "model.weights.h5", 256 << 20),
    "random-bytes": lambda real: os.urandom(4096),
    "no-config": lambda real: _zip({k: v for k, v in real.items() if k != "config.json"}),
}


def hostile(keras_bytes: bytes, kind: str) -> bytes:
    return HOSTILE[kind](_members(keras_bytes))


def _bomb_is_compressed(keras_bytes: bytes) -> None:
    data = _bomb(_members(keras_bytes), "config.json", 64 << 20)
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("config.json")
    assert info.file_size == 64 << 20 and info.compress_size < info.file_size / 200


def test_a_real_keras_file_passes_and_lists_its_members(keras_bytes, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(keras_bytes)
    assert modelfile.check(path, "m.keras") == ["config.json", "metadata.json", "model.weights.h5"]
    assert modelfile.check(io.BytesIO(keras_bytes), "m.keras") == ["config.json", "metadata.json", "model.weights.h5"]
    _bomb_is_compressed(keras_bytes)


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_uploads_are_refused_by_the_page_use_cases(kind, keras_bytes, isolated):
    data = hostile(keras_bytes, kind)
    registry = isolated["models"]
    before = sorted(p.name for p in registry.iterdir())
    tracemalloc.start()
    try:
        for call in (lambda: inspect_upload(data, "chest.keras"), lambda: register_upload(data, "chest.keras", FIELDS)):
            with pytest.raises(ModelFileError) as refused:
                call()
            text = str(refused.value)
            assert text.startswith("chest.keras is not a Keras model file"), text
            assert "/tmp" not in text and "upload.keras" not in text and str(registry) not in text
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_RSS_MB * 2**20, f"{kind}: {peak / 2**20:.0f} MB traced"
    assert issubclass(ModelFileError, ModelLoadError)
    assert sorted(p.name for p in registry.iterdir()) == before


def _cli_in_child(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run `python -m medui ARGS` in a fresh wrapper process that reports its child's peak RSS (MB)."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run([sys.executable, '-m', 'medui', *sys.argv[1:]], capture_output=True, text=True)\n"
               "print(json.dumps({'rc': p.returncode, 'err': p.stderr, 's': time.perf_counter() - t,\n"
               "                  'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    done = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    out = json.loads(done.stdout)
    return (subprocess.CompletedProcess(args, out["rc"], "", out["err"]), out["s"], out["rss_kb"] / 1024)


def test_hostile_files_are_refused_by_models_register(keras_bytes, tmp_path, isolated):
    registry = isolated["models"]
    before = sorted(p.name for p in registry.iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MEDUI_MODELS": str(registry)}
    measured = {}
    for kind in HOSTILE:
        path = tmp_path / f"{kind}.keras"
        path.write_bytes(hostile(keras_bytes, kind))
        done, seconds, rss = _cli_in_child(["models", "register", str(path), "--name", "hostile"], env)
        measured[kind] = {"s": round(seconds, 2), "peak_rss_mb": round(rss)}
        assert done.returncode == 2, (kind, done.stderr)
        assert f"{kind}.keras is not a Keras model file" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and str(tmp_path) not in done.stderr
        assert rss < MAX_RSS_MB and seconds < MAX_CLI_S, (kind, measured[kind])
    print(json.dumps(measured))
    assert sorted(p.name for p in registry.iterdir()) == before


def test_models_register_registers_a_real_file_with_or_without_a_card(keras_bytes, tmp_path, isolated, capsys):
    from medui.ai.registry import list_models
    from medui.cli import main

    path = tmp_path / "chest.keras"
    path.write_bytes(keras_bytes)
    assert main(["models", "register", str(path), "--name", "chest", "--classes", "normal,nodule"]) == 0
    assert "registered chest-v1 as a candidate" in capsys.readouterr().out
    entry = {e.id: e for e in list_models()}["chest-v1"]
    assert entry.card.class_names == ["normal", "nodule"] and entry.card.cam_layer  # the last feature maps
    card = tmp_path / "card.json"
    card.write_text(json.dumps(entry.card.to_json()))
    capsys.readouterr()
    assert main(["models", "register", str(path), "--card", str(card)]) == 2  # the card's version is taken
    assert "chest-v1.keras already exists" in capsys.readouterr().err
    assert main(["models", "register", str(path), "--card", str(card), "--name", "other"]) == 0
    other = tmp_path / "registry"
    assert main(["models", "--dir", str(other), "register", str(path)]) == 0  # the file's name, in --dir
    assert [e.id for e in list_models(other)] == ["chest-v1"]
    assert {e.id for e in list_models()} == {"chest-v1", "other-v1", "demo-chest-phantom-v1"}
    capsys.readouterr()
    assert main(["models", "register", str(tmp_path / "missing.keras")]) == 2
    assert "missing.keras is not a file" in capsys.readouterr().err


def test_a_registered_file_changed_on_disk_is_checked_when_loaded(keras_bytes, tmp_path):
    from medui.ai.registry import load_keras

    path = tmp_path / "m.keras"
    path.write_bytes(_zip({**_members(keras_bytes), "../escape": b"x"}))
    with pytest.raises(ModelFileError, match="m.keras is not a Keras model file"):
        load_keras(path)
    t = time.perf_counter()
    path.write_bytes(keras_bytes)
    assert load_keras(path).inputs and time.perf_counter() - t < 120
