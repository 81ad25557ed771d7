"""The dataset index: no pixels between indexing and training, no patient IDs on disk, lazy decoding."""

from __future__ import annotations

import dataclasses
import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medui.ai.card import ModelCard
from medui.errors import DatasetError
from medui.synthetic.phantoms import make_phantom, write_dicom, write_png
from medui.training.data import DatasetIndex, index_dataset, load_arrays, split, thumbnails
from tests.synth import phantom_volume, write_enhanced

FRAMES, ROWS, COLS = 24, 64, 80


def _volumes(root: Path, n: int = 6) -> Path:
    for k in range(2 * n):
        cls = "lesion" if k % 2 else "normal"
        (root / cls).mkdir(parents=True, exist_ok=True)
        write_enhanced(root / cls / f"vol{k}.dcm", phantom_volume(FRAMES, ROWS, COLS, seed=k) + 10 * k)
    return root


def _card() -> ModelCard:
    return ModelCard(name="t", version=1, class_names=["normal", "lesion"], input_size=[32, 32], channels=1,
                     architecture="small_cnn", cam_layer="conv")


def test_samples_hold_no_pixels_and_volumes_are_freed(tmp_path):
    root = _volumes(tmp_path / "vols")
    index_dataset([root], min_per_class=2)  # imports and caches are not what is measured
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = index_dataset([root], min_per_class=2)
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    volume_bytes = FRAMES * ROWS * COLS * 4  # float32 pixels of one volume
    assert len(index.samples) == 12
    assert kept < volume_bytes, f"the index keeps {kept} bytes; one volume is {volume_bytes}"
    for s in index.samples:
        assert not any(isinstance(v, np.ndarray) for v in vars(s).values())
        assert s.shape == (ROWS, COLS) and s.frame == FRAMES // 2 and s.modality == "CT"
    x, y = load_arrays(index, [3, 0, 5], _card())
    assert x.shape == (3, 32, 32, 1) and x.dtype == np.float32 and x.base is None
    assert y.tolist() == [_card().class_names.index(index.samples[i].label) for i in (3, 0, 5)]
    from medui.ai.preprocess import prepare
    from medui.io.loader import load

    direct = load([root / index.samples[0].file.split("/", 1)[1]]).series[0]
    assert np.array_equal(x[1], prepare(direct.pixels[FRAMES // 2], _card())[0])


def _dicom_patients(root: Path, n: int = 24) -> Path:
    for k in range(n):
        ph = make_phantom(700 + k, 48, lesion=k % 2 == 1)
        path = write_dicom(ph, root / ("lesion" if ph.label else "normal") / f"img{k}.dcm")
        ds = pydicom.dcmread(path)
        ds.PatientID = f"SECRET-MRN-{k // 4}"
        ds.save_as(path)
    return root


def test_index_round_trips_without_patient_ids(tmp_path):
    root = _dicom_patients(tmp_path / "dcm")
    index = index_dataset([root], min_per_class=5)
    assert index.report.grouping == "DICOM PatientID"
    assert len({s.patient for s in index.samples}) == 6
    text = json.dumps(index.to_json())
    assert "SECRET" not in text and "MRN" not in text and "img" not in text  # no IDs, no file names
    assert all("SECRET" not in s.patient for s in index.samples)
    again = DatasetIndex.from_json(json.loads(text))
    assert [dataclasses.replace(s, file=index.job_name(s)) for s in index.samples] == again.samples
    assert all(s.file.startswith(("dcm/lesion/", "dcm/normal/")) and s.file.endswith(".dcm") for s in again.samples)
    assert again.report.counts == index.report.counts and again.report.patients == index.report.patients
    parts = split(again, 0.25, 0.25, seed=2)
    assert parts == split(index, 0.25, 0.25, seed=2)
    # pseudonyms are stable (one salt per installation) and a second indexing splits the same way
    second = index_dataset([root], min_per_class=5)
    assert [s.patient for s in second.samples] == [s.patient for s in index.samples]
    assert split(second, 0.25, 0.25, seed=2) == parts
    x, _ = load_arrays(again, parts["test"], _card())
    assert len(x) == len(parts["test"]) > 0


def test_changed_or_missing_files_are_reported(tmp_path):
    root = tmp_path / "png"
    for k in range(8):
        write_png(make_phantom(k, 48, lesion=k % 2 == 1), root / ("lesion" if k % 2 else "normal") / f"p{k}.png")
    index = index_dataset([root], min_per_class=2)
    thumbs = thumbnails(index, per_class=2)
    assert list(thumbs) == ["normal", "lesion"] and all(len(v) == 2 for v in thumbs.values())
    assert all(t.dtype == np.uint8 and t.shape == (48, 48) for v in thumbs.values() for t in v)
    victim = root / index.samples[0].file.split("/", 1)[1]
    write_png(make_phantom(99, 48, lesion=False), victim)
    with pytest.raises(DatasetError, match="changed since"):
        load_arrays(index, [0], _card())
    victim.unlink()
    with pytest.raises(DatasetError, match="is gone"):
        load_arrays(index, [0], _card())


def test_a_zip_in_memory_is_indexed_and_loaded_but_not_handed_to_a_job(tmp_path):
    from tests.synth import zip_bytes

    root = tmp_path / "png"
    for k in range(8):
        write_png(make_phantom(k, 48, lesion=k % 2 == 1), root / ("lesion" if k % 2 else "normal") / f"p{k}.png")
    files = {f"set/{p.relative_to(root).as_posix()}": p.read_bytes() for p in root.rglob("*.png")}
    index = index_dataset([("set.zip", zip_bytes(files))], min_per_class=2)
    x, y = load_arrays(index, list(range(len(index.samples))), _card())
    assert x.shape == (8, 32, 32, 1) and sorted(y.tolist()) == [0] * 4 + [1] * 4
    with pytest.raises(DatasetError, match="save the upload to a folder"):
        index.to_json()


def test_patient_folder_names_stay_out_of_the_job_folder(tmp_path, isolated):
    from medui.training import jobs
    from medui.training.fit import TrainConfig
    from medui.training.runs import job_index

    root = tmp_path / "folders"
    for k in range(12):
        write_png(make_phantom(k, 48, lesion=k % 2 == 1),
                  root / ("lesion" if k % 2 else "normal") / f"MRN-{k // 2:05d}" / f"MRN-{k // 2:05d}-{k}.png")
    (root / "normal" / "notes.txt").write_text("x")
    index = index_dataset([str(root)], min_per_class=2)
    assert "folder" in index.report.grouping and index.report.unreadable
    job = jobs.create(TrainConfig(data=[str(root)], out="x").to_json(), index=index)
    assert "MRN" not in (job.path / "index.json").read_text()
    again = job_index(job, TrainConfig(**job.params()))
    x, y = load_arrays(again, [0, 5, 11], _card())
    assert np.array_equal(x, load_arrays(index, [0, 5, 11], _card())[0])
    fresh = jobs.create(TrainConfig(data=[str(root)], out="x", min_per_class=2).to_json())  # the job indexes
    assert len(job_index(fresh, TrainConfig(**fresh.params())).samples) == 12
    assert "MRN" not in (fresh.path / "index.json").read_text()
    # files are found again by their pseudonymous names: a file added since does not matter, a changed one does
    write_png(make_phantom(99, 48, lesion=False), root / "lesion" / "AAA" / "new.png")
    assert np.array_equal(load_arrays(again, [0, 5, 11], _card())[0], x)
    victim = root / index.samples[5].file.split("/", 1)[1]
    write_png(make_phantom(98, 48, lesion=False), victim)
    with pytest.raises(DatasetError, match="changed since"):
        load_arrays(again, [0, 5, 11], _card())
