"""Deterministic synthetic chest-radiograph phantoms, with and without focal lesions.

Each phantom has lungs, heart and mediastinum, ribs, clavicles, soft tissue and quantum noise, with
anatomy, position and exposure varying by seed. Lesions (nodules and consolidations of varying size,
contrast and location, always inside a lung) come with their ground-truth mask. Phantoms are written
as DICOM (realistic DX headers) or PNG, and as labelled folders for training tests.

They are a test and demonstration device, not a substitute for real radiographs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("normal", "lesion")


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint16, 12-bit values, MONOCHROME2 (bright = dense)
    mask: np.ndarray  # bool, lesion pixels
    label: int  # 0 normal, 1 lesion
    kind: str  # "none", "nodule" or "consolidation"
    seed: int


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             angle: float = 0.0) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    y, x = yy - cy, xx - cx
    out: np.ndarray = ((x * c + y * s) / rx) ** 2 + ((-x * s + y * c) / ry) ** 2
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    import cv2

    small = rng.normal(0, 1, (max(2, int(shape[0] / scale)), max(2, int(shape[1] / scale)))).astype(np.float32)
    return cv2.resize(small, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def make_phantom(seed: int, size: int = 256, lesion: bool | None = None) -> Phantom:
    """One phantom; `lesion=None` draws presence at random (50%)."""
    import cv2

    rng = np.random.default_rng(seed)
    has_lesion = bool(rng.random() < 0.5) if lesion is None else lesion
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    s = size / 256.0
    shift_x, shift_y = rng.normal(0, 6 * s), rng.normal(0, 6 * s)
    cx, cy = size / 2 + shift_x, size / 2 + shift_y
    width = rng.uniform(0.86, 1.0)
    # attenuation map (higher = denser = brighter)
    att = np.zeros((size, size), np.float32)
    body = _ellipse(yy, xx, cy + 10 * s, cx, 135 * s, 120 * s * width) < 1
    att += body * 1.0
    lung_h = rng.uniform(72, 88) * s
    lungs = []
    for side in (-1, 1):
        lx = cx + side * rng.uniform(44, 52) * s * width
        ly = cy - 8 * s + rng.normal(0, 2 * s)
        lung = _ellipse(yy, xx, ly, lx, lung_h, rng.uniform(30, 36) * s * width, side * rng.uniform(0.05, 0.15)) < 1
        lung &= yy < ly + lung_h * 0.85  # flat-ish diaphragm
        lungs.append(lung)
        att -= lung * 0.72
    lung_mask = lungs[0] | lungs[1]
    heart = _ellipse(yy, xx, cy + 30 * s, cx + rng.uniform(8, 16) * s, rng.uniform(30, 38) * s,
                     rng.uniform(30, 40) * s, 0.3) < 1
    att += heart * lung_mask * 0.55 + heart * (~lung_mask) * 0.15
    mediastinum = (np.abs(xx - cx) < rng.uniform(12, 16) * s) & (yy < cy + 40 * s) & (yy > cy - 100 * s)
    att += mediastinum * 0.35
    # ribs: curved bands over the lungs, and clavicles
    for k in range(9):
        y0 = cy - 80 * s + k * rng.uniform(17, 19) * s
        for side in (-1, 1):
            curve = y0 + 0.004 / s * (xx - cx) ** 2 * rng.uniform(0.9, 1.1)
            band = (np.abs(yy - curve) < 3.2 * s) & (side * (xx - cx) > 8 * s) & body
            att += band * 0.22
    clav = (np.abs(yy - (cy - 92 * s + 0.0025 / s * (xx - cx) ** 2)) < 4 * s) & (np.abs(xx - cx) < 70 * s) & body
    att += clav * 0.3
    att += _smooth_noise(rng, (size, size), 24 * s) * 0.04 * body
    mask = np.zeros((size, size), bool)
    kind = "none"
    if has_lesion:
        ys, xs = np.nonzero(lung_mask & ~heart)
        pick = rng.integers(len(ys))
        ly, lx = float(ys[pick]), float(xs[pick])
        if rng.random() < 0.6:
            kind = "nodule"
            r = rng.uniform(7, 14) * s
            d = _ellipse(yy, xx, ly, lx, r, r * rng.uniform(0.8, 1.2))
            lesion_att = np.clip(1 - d, 0, 1) ** 0.5 * rng.uniform(0.35, 0.6)
            mask = d < 1
        else:
            kind = "consolidation"
            ry, rx = rng.uniform(14, 24) * s, rng.uniform(12, 20) * s
            d = _ellipse(yy, xx, ly, lx, ry, rx, rng.uniform(0, np.pi)) + _smooth_noise(rng, (size, size), 8 * s) * 0.3
            mask = (d < 1) & lung_mask
            lesion_att = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.5 * s) * rng.uniform(0.3, 0.5)
        att += lesion_att
    # exposure and detector: log-domain to 12-bit with noise
    exposure = rng.uniform(0.85, 1.15)
    img = (att * 1500 * exposure + 600 + rng.normal(0, 1, 1)[0] * 60)
    img += rng.normal(0, 18, img.shape)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7 * s)
    img = np.clip(img, 0, 4095).astype(np.uint16)
    return Phantom(img, mask, int(has_lesion), kind, seed)


def phantom_set(n: int, seed: int = 0, size: int = 256, balanced: bool = True) -> list[Phantom]:
    """n phantoms with seeds seed..seed+n-1; balanced alternates normal/lesion."""
    return [make_phantom(seed + k, size, lesion=(k % 2 == 1) if balanced else None) for k in range(n)]


def write_dicom(ph: Phantom, path: Path, pixel_spacing: float = 1.4) -> Path:
    """A DX 'For Presentation' DICOM file with realistic headers (fictitious patient)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    dx = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage, for presentation
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = dx
    ds.SOPClassUID = dx
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[f"medui-phantom-{ph.seed}"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"medui-study-{ph.seed}"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"medui-series-{ph.seed}"])
    ds.PatientName = f"Phantom^{ph.seed:05d}"
    ds.PatientID = f"PH{ph.seed:05d}"
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SeriesDescription = "MedUI synthetic chest phantom"
    ds.ImageComments = f"synthetic; lesion={ph.kind}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ph.image.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [pixel_spacing, pixel_spacing]
    ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    ds.WindowCenter, ds.WindowWidth = 1800, 3000
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.PixelData = ph.image.astype("<u2").tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_png(ph: Phantom, path: Path, bits: int = 8) -> Path:
    import cv2

    img = (ph.image >> 4).astype(np.uint8) if bits == 8 else (ph.image.astype(np.uint16) << 4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def write_labeled_folder(root: Path, n: int, seed: int = 0, size: int = 256, fmt: str = "png",
                         patients: int | None = None) -> Path:
    """root/<class>/<patient>/<image> with n images, balanced classes. fmt: 'png' or 'dcm'."""
    root = Path(root)
    for k, ph in enumerate(phantom_set(n, seed, size)):
        patient = f"patient{(k // 2) % patients if patients else k:04d}"
        cls = CLASSES[ph.label]
        name = f"{patient}_{ph.seed}.{fmt}"
        target = root / cls / patient / name
        (write_dicom if fmt == "dcm" else write_png)(ph, target)
    return root
