"""Generated studies for the batch tests and benchmark: small CR radiographs (chest phantoms) and
8-slice CT volumes, each its own study with an accession number and date, plus corrupt ones."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from medui.synthetic.phantoms import make_phantom, write_dicom
from tests import synth


def cr_study(folder: Path, k: int, size: int = 64) -> list[Path]:
    """One CR chest phantom (a lesion in every other one) as a study of its own."""
    path = write_dicom(make_phantom(k, size=size, lesion=k % 2 == 1), folder / f"cr{k:03d}" / "1.dcm")
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.AccessionNumber, ds.StudyDate = "CR", f"ACC{k:05d}", f"202601{k % 28 + 1:02d}"
    ds.PatientID, ds.PatientName = f"PAT-{k:03d}", f"Batch^Patient{k:03d}"
    ds.save_as(path)
    return [path]


def ct_study(folder: Path, k: int, slices: int = 8, size: int = 64) -> list[Path]:
    """One 8-slice CT phantom volume as a study of its own."""
    paths = synth.write_series(folder / f"ct{k:03d}", synth.phantom_volume(slices, size, size, seed=k), name="s")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.AccessionNumber, ds.StudyDate = f"ACC{k:05d}", f"202602{k % 28 + 1:02d}"
        ds.PatientID, ds.PatientName = f"PAT-{k:03d}", f"Batch^Patient{k:03d}"
        ds.save_as(p)
    return paths


def corrupt_study(folder: Path, k: int) -> list[Path]:
    """A CR study whose pixel data is cut short: its header reads, its image does not."""
    [path] = cr_study(folder, k)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 2000])
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.StudyInstanceUID
    return [path]


def study_folder(folder: Path, n: int = 40, n_ct: int = 10,
                 corrupt: tuple[int, ...] = (5, 17)) -> dict[str, list[Path]]:
    """`n` studies in `folder` (`n_ct` of them CT, those numbered in `corrupt` broken); {study uid: files}."""
    out: dict[str, list[Path]] = {}
    for k in range(n):
        if k in corrupt:
            paths = corrupt_study(folder, k)
        elif k % (n // n_ct) == 0 if n_ct else False:
            paths = ct_study(folder, k)
        else:
            paths = cr_study(folder, k)
        out[str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)] = paths
    return out


__all__ = ["cr_study", "ct_study", "corrupt_study", "study_folder"]
