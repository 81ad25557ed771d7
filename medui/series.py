"""The image series every reader returns and every page and model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    """A linear display window in modality units (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2


@dataclass(frozen=True)
class VoiLut:
    """A DICOM VOI LUT: input values from `first` map through `table` to 0..2**bits-1."""

    first: float
    table: np.ndarray
    bits: int
    explanation: str = ""


@dataclass(frozen=True)
class HeaderRow:
    """One top-level DICOM attribute as read (unmasked); `medui.reading.header.table` masks for display."""

    tag: str  # '(GGGG,EEEE)'
    keyword: str
    vr: str
    value: str
    private: bool = False


@dataclass
class Series:
    """One stack of images in modality units, placed in patient space.

    `pixels` is float32 of shape (slices, rows, cols) or (slices, rows, cols, 3) for colour.
    `affine` maps voxel indices (slice, row, col, 1) to DICOM patient coordinates (LPS, mm).
    """

    pixels: np.ndarray = field(repr=False)
    affine: np.ndarray = field(repr=False)
    modality: str = "OT"
    photometric: str = "MONOCHROME2"
    window: Window | None = None
    voi_lut: VoiLut | None = field(default=None, repr=False)
    # The first instance's VOI LUT module as a small pydicom Dataset (VOILUTSequence, VOILUTFunction,
    # BitsStored, PixelRepresentation), for pydicom.pixels.apply_voi_lut / apply_windowing; None if absent.
    voi: Any = field(default=None, repr=False)
    body_part: str = ""
    description: str = ""
    uid: str = ""
    source_format: str = "DICOM"
    header: list[HeaderRow] = field(default_factory=list, repr=False)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    has_geometry: bool = True
    # DICOM PatientID: for grouping only, never logged or shown unmasked
    patient_id: str = field(default="", repr=False)
    # False when the file records no pixel size (PNG, a CR without Pixel Spacing): `spacing` is then a
    # placeholder of 1 and every size is given in pixels.
    pixel_spacing_known: bool = True

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (slice, row, col), from the affine's columns."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def study_uid(self) -> str:
        """The DICOM StudyInstanceUID (0020,000D) from the header rows ('' when the file has none): an
        identifier the audit trail records beside `uid`, never a name."""
        return next((r.value for r in self.header if r.tag == "(0020,000D)"), "")

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 4

    @property
    def n_slices(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_volume(self) -> bool:
        return self.n_slices >= 3 and self.has_geometry

    @cached_property
    def value_range(self) -> tuple[float, float]:
        """(min, max) of the pixels, computed once (a full pass over a volume costs tens of ms).

        Replacing `pixels` afterwards (the UI's 'Clear all' empties them) keeps the old range."""
        return (float(np.min(self.pixels)), float(np.max(self.pixels))) if self.pixels.size else (0.0, 0.0)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    def summary(self) -> str:
        """One line for pickers: modality, description, shape and voxel size."""
        shape = "x".join(str(s) for s in self.pixels.shape[1:3])
        sp = self.spacing
        size = f"{self.n_slices} x {shape}" if self.n_slices > 1 else shape
        desc = self.description or self.body_part or self.source_format
        colour = " colour" if self.is_color else ""
        if not self.pixel_spacing_known:
            return f"{self.modality} · {desc} · {size}{colour} px · pixel spacing unknown"
        return f"{self.modality} · {desc} · {size}{colour} · {sp[1]:.2f}x{sp[2]:.2f}x{sp[0]:.2f} mm"

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.value_range
        return {
            "modality": self.modality,
            "shape": list(self.pixels.shape),
            "spacing": [round(s, 6) for s in self.spacing],
            "affine": [[round(float(v), 6) for v in row] for row in self.affine],
            "value_range": [lo, hi],
            "photometric": self.photometric,
            "description": self.description,
            "body_part": self.body_part,
            "format": self.source_format,
            "window": None if self.window is None else [self.window.center, self.window.width],
            "files": list(self.files),
            "warnings": list(self.warnings),
        }
