"""Generated DICOM test series with known geometry and values (pydicom writes real files)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def phantom_volume(n: int, rows: int = 32, cols: int = 40, seed: int = 0) -> np.ndarray:
    """int16 stored values with a unique pattern per slice, so order and flips are detectable."""
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 2000, size=(n, rows, cols), dtype=np.int16)
    vol[:, :4, :6] = np.arange(n, dtype=np.int16)[:, None, None] * 10  # slice marker in a corner
    return vol


def _base(study: str, series: str, modality: str = "CT") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study])
    ds.Modality = modality
    ds.SeriesDescription = "generated"
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    return ds


def write_series(folder: Path, vol: np.ndarray, *, spacing: Sequence[float] = (0.7, 0.8),
                 slice_step: float = 2.5, row_cos: Sequence[float] = (1, 0, 0), col_cos: Sequence[float] = (0, 1, 0),
                 origin: Sequence[float] = (-100.0, -120.0, 50.0), positions: Sequence[Sequence[float]] | None = None,
                 order: Sequence[int] | None = None, series_uid: str | None = None, name: str = "img",
                 description: str = "generated", modality: str = "CT") -> list[Path]:
    """One file per slice. Slice k sits at origin + k*slice_step*normal unless `positions` says otherwise.
    `order` sets which slice each file number holds (file names and InstanceNumbers follow it)."""
    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    series_uid = series_uid or generate_uid()
    rc, cc = np.asarray(row_cos, float), np.asarray(col_cos, float)
    normal = np.cross(rc, cc)
    order = list(order) if order is not None else list(range(len(vol)))
    paths = []
    for file_no, k in enumerate(order):
        ds = _base(study, series_uid, modality)
        ds.SeriesDescription = description
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = file_no + 1
        pos = positions[k] if positions is not None else np.asarray(origin) + k * slice_step * normal
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(rc) + list(cc)]
        ds.PixelSpacing = [spacing[0], spacing[1]]
        ds.SliceThickness = abs(slice_step)
        ds.Rows, ds.Columns = vol.shape[1:]
        ds.PixelData = vol[k].astype("<i2").tobytes()
        path = folder / f"{name}{file_no:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced(path: Path, vol: np.ndarray, *, spacing: Sequence[float] = (0.7, 0.8), slice_step: float = 3.0,
                   origin: Sequence[float] = (-50.0, -60.0, 10.0), frame_order: Sequence[int] | None = None) -> Path:
    """An Enhanced CT multi-frame object; per-frame positions in functional groups, frames shuffled."""
    frame_order = list(frame_order) if frame_order is not None else list(range(len(vol)))
    ds = _base(generate_uid(), generate_uid())
    ds.SOPClassUID = ENHANCED_CT
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.NumberOfFrames = len(vol)
    ds.Rows, ds.Columns = vol.shape[1:]
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = list(spacing)
    pm.SliceThickness = slice_step
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pvt = Dataset()
    pvt.RescaleSlope = 1
    pvt.RescaleIntercept = -1024
    pvt.RescaleType = "HU"
    shared.PixelMeasuresSequence = [pm]
    shared.PlaneOrientationSequence = [po]
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in frame_order:
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * slice_step]
        item.PlanePositionSequence = [pp]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack([vol[k] for k in frame_order]).astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def dicom_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def png_bytes(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    import zipfile

    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return bio.getvalue()


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def jpeg_lossless_copy(src: Path, dst: Path, syntax: str = "JPEGLosslessProcess14_1") -> Path:
    """Re-encode a DICOM file as JPEG Lossless with GDCM (a test dependency through pydicom's plugins)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"GDCM could not read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError(f"GDCM could not re-encode {src} as {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(dst))
    if not writer.Write():
        raise RuntimeError(f"GDCM could not write {dst}")
    return dst


def _tiled_mr(plane: np.ndarray, series_uid: str | None, instance: int, spacing: Sequence[float],
              slice_step: float | None, manufacturer: str, image_type: list[str], description: str) -> Dataset:
    """The MR header every generated mosaic/grid file shares (pixels and private tags added by the caller)."""
    ds = _base(generate_uid(), series_uid or generate_uid(), "MR")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    del ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth
    ds.Manufacturer = manufacturer
    ds.ImageType = image_type
    ds.SeriesDescription = description
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = plane.shape
    ds.PixelSpacing = list(spacing)
    if slice_step is not None:
        ds.SpacingBetweenSlices = slice_step
        ds.SliceThickness = slice_step
    return ds


def write_mosaic(path: Path, tiles: np.ndarray, *, n_declared: int | None = None, grid: int | None = None,
                 spacing: Sequence[float] = (2.0, 2.0), slice_step: float | None = 3.0,
                 row_cos: Sequence[float] = (1, 0, 0), col_cos: Sequence[float] = (0, 1, 0),
                 ipp: Sequence[float] = (-100.0, -80.0, 20.0), orientation: bool = True,
                 series_uid: str | None = None, instance: int = 1, rows_cols: tuple[int, int] | None = None) -> Path:
    """A Siemens-style MOSAIC MR file: `tiles` (n, r, c) laid out row-major on a grid x grid mosaic
    (grid = ceil(sqrt(n)) unless given), NumberOfImagesInMosaic in the private tag (0019,100A)
    (`n_declared` overrides it), ImagePositionPatient at the top-left of the whole mosaic."""
    n, r, c = tiles.shape
    grid = grid or int(np.ceil(np.sqrt(n)))
    plane = np.zeros((grid * r, grid * c), np.int16)
    for k in range(n):
        plane[(k // grid) * r:(k // grid + 1) * r, (k % grid) * c:(k % grid + 1) * c] = tiles[k]
    if rows_cols is not None:
        plane = np.resize(plane, rows_cols)
    ds = _tiled_mr(plane, series_uid, instance, spacing, slice_step, "SIEMENS",
                   ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"], "mosaic")
    if orientation:
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(row_cos) + list(col_cos)]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.add_new((0x0019, 0x0010), "LO", "SIEMENS MR HEADER")
    ds.add_new((0x0019, 0x100A), "US", n if n_declared is None else n_declared)
    ds.PixelData = plane.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_uih_mosaic(path: Path, tiles: np.ndarray, *, n_declared: str | None = None,
                     spacing: Sequence[float] = (2.0, 2.0), slice_step: float | None = 3.0,
                     row_cos: Sequence[float] = (1, 0, 0), col_cos: Sequence[float] = (0, 1, 0),
                     ipp: Sequence[float] = (-100.0, -80.0, 20.0), manufacturer: str = "UIH",
                     series_uid: str | None = None, instance: int = 1) -> Path:
    """A UIH (United Imaging) grid MR file as dcm2niix reads one (nii_dicom.cpp: readDICOMx case
    kNumberOfImagesInGridUIH, nii_demosaic): `tiles` (n, r, c) laid out row-major on ceil(sqrt(n)) columns
    and ceil(n / columns) rows, the count as the DS private tag (0065,1050) (`n_declared` overrides its
    text; text that is no number is written as UN bytes), Manufacturer (0008,0070) 'UIH', no 'MOSAIC' in
    ImageType, and ImagePositionPatient the top-left voxel of the first tile (dcm2niix applies no mosaic
    correction to UIH grids)."""
    n, r, c = tiles.shape
    n_cols = int(np.ceil(np.sqrt(n)))
    n_rows = -(-n // n_cols)
    plane = np.zeros((n_rows * r, n_cols * c), np.int16)
    for k in range(n):
        plane[(k // n_cols) * r:(k // n_cols + 1) * r, (k % n_cols) * c:(k % n_cols + 1) * c] = tiles[k]
    ds = _tiled_mr(plane, series_uid, instance, spacing, slice_step, manufacturer, ["ORIGINAL", "PRIMARY", "M"],
                   "uih grid")
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in list(row_cos) + list(col_cos)]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
    ds.add_new((0x0065, 0x0010), "LO", "MEDUI SYNTHETIC UIH TEST")  # dcm2niix reads the raw tag, any creator
    count = str(n) if n_declared is None else n_declared
    try:
        ds.add_new((0x0065, 0x1050), "DS", count)
    except ValueError:  # no number at all: written as unknown bytes (what an implicit-VR reader gets)
        ds.add_new((0x0065, 0x1050), "UN", (count + " " * (len(count) % 2)).encode("ascii"))
    ds.PixelData = plane.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def identifiers(k: int) -> dict[str, str]:
    """Unique, greppable identifiers of patient `k` (no token is a substring of another patient's)."""
    return {"PatientName": f"Qzfam{k}x^Qzgiv{k}x", "PatientID": f"QZPID{k}X77", "PatientBirthDate": f"19{k + 10}0417",
            "AccessionNumber": f"QZACC{k}X88", "InstitutionName": f"Qzinst{k}x Hospital",
            "ReferringPhysicianName": f"Qzdoc{k}x^Qzdocgiv{k}x", "StudyID": f"QZSTD{k}X",
            "OtherPatientIDs": f"QZOTH{k}X99"}


def identified_dataset(root: Path, per_class: int = 6, size: int = 32) -> tuple[Path, list[str]]:
    """A labelled DICOM folder laid out as many exports are, <class>/<PatientID>/<PatientName>.dcm,
    every file carrying the identifiers of `identifiers`; returns (root, every identifier text)."""
    from medui.synthetic.phantoms import make_phantom

    texts: list[str] = []
    k = 0
    for label, lesion in (("normal", False), ("pneumonia", True)):
        for _ in range(per_class):
            ids = identifiers(k)
            img = make_phantom(1000 + k, size, lesion=lesion).image
            ds = _base(generate_uid(), generate_uid(), "CR")
            for tag, value in ids.items():
                setattr(ds, tag, value)
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.Rows, ds.Columns = img.shape
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = 0
            ds.PixelData = np.clip(img * 4000, 0, 4095).astype("<u2").tobytes()
            folder = root / label / ids["PatientID"]
            folder.mkdir(parents=True, exist_ok=True)
            ds.save_as(folder / f"{ids['PatientName'].replace('^', '_')}.dcm", enforce_file_format=True)
            texts += list(ids.values())
            k += 1
    return root, texts


def identifier_forms(texts: Sequence[str]) -> set[str]:
    """Each identifier as text, in upper and lower case, in DICOM PN form ('^') and with spaces, its PN
    components alone, and a birth date also as YYYY-MM-DD."""
    forms: set[str] = set()
    for t in texts:
        variants = {t, t.replace("^", " "), t.replace("^", "_"), *t.split("^"), *t.split(" ")}
        if len(t) == 8 and t.isdigit():
            variants.add(f"{t[:4]}-{t[4:6]}-{t[6:]}")
        forms |= {v for v in variants if len(v) >= 6 and v != "Hospital"}
    return forms | {f.upper() for f in forms} | {f.lower() for f in forms}


def leaks(folders: Sequence[Path], forms: set[str]) -> list[str]:
    """'file: identifier' for every identifier form in any file's name or bytes under `folders`."""
    found: list[str] = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            data = path.name.encode() + b"\n" + (path.read_bytes() if path.is_file() else b"")
            low = data.lower()
            found += [f"{path}: {f}" for f in sorted(forms) if f.encode().lower() in low]
    return found


@dataclass
class Upload:
    """A file as the browser's uploader hands it over: its relative name and bytes."""

    name: str
    data: bytes

    def getvalue(self) -> bytes:
        return self.data


def wait_for_job(job: Any, timeout: float = 300, poll: float = 0.3) -> dict[str, Any]:
    """The job's final status; fails with its log when it has not ended within `timeout` seconds."""
    from medui.training import jobs

    deadline = time.time() + timeout
    while time.time() < deadline:
        st = job.status()
        if st.get("state") in jobs.TERMINAL:
            return dict(st)
        time.sleep(poll)
    raise AssertionError(f"job stuck: {job.status()}\n{job.log_tail()}")


def register_fixed_three_class(folder: Path, name: str) -> Path:
    """A registry in `folder` with one 3-class seed CNN (normal, nodule, effusion) whose logits ignore the
    image and make 'nodule' the prediction: every saliency map of it is flat. Returns the registry."""
    from medui.ai.architectures import build
    from medui.ai.card import ModelCard, Preprocessing
    from medui.ai.registry import register

    model = build("seed_cnn", size=(32, 32), n_classes=3).model
    kernel, _ = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 0.0, np.array([0.0, 5.0, 1.0], np.float32)])
    model.save(folder / f"{name}.keras")
    card = ModelCard(name=name, version=1, class_names=["normal", "nodule", "effusion"], input_size=[32, 32],
                     channels=3, architecture="seed_cnn", cam_layer="conv", task="multiclass",
                     preprocessing=Preprocessing("minmax"))
    register(folder / f"{name}.keras", card, folder / "registry")
    return folder / "registry"
