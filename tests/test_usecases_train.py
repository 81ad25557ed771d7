"""The train use cases: uploads staged by content, server folders closed by default, typed requests."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from medui.errors import DatasetError, ServerFolderError, TrainingError
from medui.training.fit import TrainConfig
from medui.usecases import train
from medui.usecases.train import TrainRequest, allowed_folder, stage_upload
from tests.synth import Upload

ROOT = Path(__file__).resolve().parents[1]



def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _staged(root: Path, label: str) -> bytes:
    """The one file staged under <label>/<patient pseudonym>/."""
    (only,) = (root / label).glob("*/*")
    return only.read_bytes()


def test_uploads_with_the_same_names_and_sizes_but_new_bytes_get_a_new_folder():
    old_a, new_a, old_b = _png(1), _png(2), _png(3)
    first = stage_upload([Upload("cxr/normal/a.png", old_a), Upload("cxr/lesion/b.png", old_b)])
    second = stage_upload([Upload("cxr/normal/a.png", new_a), Upload("cxr/lesion/b.png", old_b)])
    assert first != second
    assert _staged(second, "normal") == new_a and _staged(first, "normal") == old_a
    again = stage_upload([Upload("cxr/lesion/b.png", old_b), Upload("cxr/normal/a.png", new_a)])
    assert again == second  # the same upload (in any order) reuses its folder
    assert not list(second.parent.glob(".*.partial"))


def test_staged_paths_stay_inside_the_upload_folder():
    root = stage_upload([Upload("../../etc/normal/x.png", _png(1)), Upload("/abs/lesion/y.png", _png(2))])
    staged = [p.resolve() for p in root.rglob("*") if p.is_file()]
    assert len(staged) == 2 and all(root.resolve() in p.parents for p in staged)
    assert _staged(root, "etc") == _png(1) and _staged(root, "abs") == _png(2)
    with pytest.raises(DatasetError, match="no files were uploaded"):
        stage_upload([])
    with pytest.raises(DatasetError, match="holds no image"):
        stage_upload([Upload("notes/normal/a.txt", b"text")])


def test_server_folders_are_closed_when_no_roots_are_set(tmp_path, monkeypatch):
    (tmp_path / "cxr").mkdir()
    monkeypatch.delenv("MEDUI_DATA_ROOTS", raising=False)
    for text in (str(tmp_path / "cxr"), "/etc", ""):
        with pytest.raises(ServerFolderError, match="turned off: MEDUI_DATA_ROOTS is not set.*administrator"):
            allowed_folder(text)
    monkeypatch.setenv("MEDUI_DATA_ROOTS", "")
    with pytest.raises(ServerFolderError, match="MEDUI_DATA_ROOTS is not set"):
        allowed_folder(str(tmp_path / "cxr"))


def test_server_folders_are_allowed_only_inside_the_roots(tmp_path, monkeypatch):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "cxr").mkdir(parents=True)
    outside.mkdir()
    (allowed / "link").symlink_to(outside)
    monkeypatch.setenv("MEDUI_DATA_ROOTS", str(allowed))
    assert allowed_folder(str(allowed / "cxr")) == (allowed / "cxr").resolve()
    assert allowed_folder(str(allowed)) == allowed.resolve()
    for escape in (str(outside), str(allowed / ".." / "outside"), str(allowed / "link"), "/etc"):
        with pytest.raises(ServerFolderError, match="outside the folders this server allows"):
            allowed_folder(escape)
    with pytest.raises(ServerFolderError, match="does not exist"):
        allowed_folder(str(allowed / "nope"))


def test_train_requests_become_train_configs_and_jobs(tmp_path, monkeypatch):
    started = []
    job = SimpleNamespace(id="job")  # what the use case reads of a started job (its id, for the audit row)
    monkeypatch.setattr(train.jobs, "start", lambda params, index=None, **kw: started.append(params) or job)
    base = TrainRequest(data=tmp_path, name=" new ", epochs=3, batch_size=8, learning_rate=0.01,
                        target_sensitivity=0.9, hflip=True, patient_pattern="<patient>_<n>.png", min_per_class=4)
    cfg = base.config()
    assert cfg == TrainConfig(data=[str(tmp_path)], out="new", epochs=3, batch_size=8, learning_rate=0.01,
                              min_sensitivity=0.9, patient_pattern="<patient>_<n>.png", min_per_class=4,
                              augment={**TrainConfig([], "x").augment, "hflip": 1.0})
    assert TrainConfig([], "x").augment["hflip"] == 0.0  # the default was not changed in place
    from dataclasses import replace

    assert replace(base, start_from="fine-tune", base="demo-chest-phantom-v1").config().base == "demo-chest-phantom-v1"
    assert replace(base, start_from="architecture", arch="small_cnn").config().arch == "small_cnn"
    assert replace(base, target_sensitivity=0.0, hflip=False).config().min_sensitivity is None
    with pytest.raises(TrainingError, match="unknown architecture"):
        replace(base, start_from="architecture", arch="resnet9000").config()
    with pytest.raises(TrainingError, match="needs a registered model"):
        replace(base, start_from="fine-tune").config()
    with pytest.raises(TrainingError, match="needs a name"):
        replace(base, name="  ").config()
    assert train.start(base) is job and started == [cfg.to_json()]


def _train_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "train.py"), default_timeout=120).run()


def test_train_page_server_tab_is_closed_by_default(tmp_path, monkeypatch):
    (tmp_path / "cxr").mkdir()
    monkeypatch.delenv("MEDUI_DATA_ROOTS", raising=False)
    at = _train_page()
    assert not at.exception
    assert any("turned off on this server" in i.value and "MEDUI_DATA_ROOTS" in i.value for i in at.info)
    at.text_input(key="train.path").set_value(str(tmp_path / "cxr")).run()
    assert any("MEDUI_DATA_ROOTS is not set" in e.value for e in at.error)


def test_train_page_checks_a_server_folder_inside_the_roots(tmp_path):
    from medui.synthetic.phantoms import write_labeled_folder

    root = write_labeled_folder(tmp_path / "data", 30, seed=500, size=64)
    at = _train_page()
    assert any("Allowed: folders inside" in c.value for c in at.caption)
    at.text_input(key="train.path").set_value(str(root)).run()
    assert not at.exception
    assert any("lesion" in str(df.value) for df in at.dataframe)
    at.text_input(key="train.path").set_value("/etc").run()
    assert any("outside the folders this server allows" in e.value for e in at.error)
