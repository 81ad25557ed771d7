"""Slice geometry: per-frame position/orientation from DICOM headers, stack ordering, affines and
the checks a radiologist cares about (irregular spacing, missing slices, gantry tilt)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FrameGeom:
    """Where one frame sits: top-left voxel centre (LPS mm), direction cosines and pixel size."""

    position: tuple[float, ...] | None  # x, y, z
    orientation: tuple[float, ...] | None  # row cosine (3) then column cosine (3)
    pixel_spacing: tuple[float, ...] | None  # (between rows, between columns) in mm
    thickness: float | None
    slope: float = 1.0
    intercept: float = 0.0


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _positive(values: tuple[float, ...] | None) -> tuple[float, ...] | None:
    return values if values is not None and all(v > 0 for v in values) else None


def functional_value(ds: Any, index: int, seq: str, attr: str) -> Any:
    """An attribute of an enhanced multi-frame functional group: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    candidates = []
    if per_frame is not None and index < len(per_frame):
        candidates.append(per_frame[index])
    if shared:
        candidates.append(shared[0])
    for group in candidates:
        items = group.get(seq)
        if items and attr in items[0]:
            return items[0][attr].value
    return None


def frame_geometries(ds: Any, n_frames: int) -> list[FrameGeom]:
    """Geometry and rescale of every frame of a (possibly enhanced multi-frame) dataset."""
    top_iop = _floats(ds.get("ImageOrientationPatient"), 6)
    top_ipp = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _positive(_floats(ds.get("PixelSpacing"), 2)) or _positive(_floats(ds.get("ImagerPixelSpacing"), 2))
    thickness = _floats([ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")], 1)
    slope = float(ds.get("RescaleSlope", ds.get("DoseGridScaling", 1.0)) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    offsets = _floats(ds.get("GridFrameOffsetVector"), n_frames) if n_frames > 1 else None
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    out = []
    for i in range(n_frames):
        ipp, iop, sp, th, sl, ic = top_ipp, top_iop, spacing, thickness, slope, intercept
        if enhanced:
            ipp = _floats(functional_value(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3) or ipp
            iop = _floats(functional_value(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6) or iop
            sp = _positive(_floats(functional_value(ds, i, "PixelMeasuresSequence", "PixelSpacing"), 2)) or sp
            th = _floats([functional_value(ds, i, "PixelMeasuresSequence", "SpacingBetweenSlices")
                          or functional_value(ds, i, "PixelMeasuresSequence", "SliceThickness")], 1) or th
            rs = functional_value(ds, i, "PixelValueTransformationSequence", "RescaleSlope")
            ri = functional_value(ds, i, "PixelValueTransformationSequence", "RescaleIntercept")
            sl = float(rs) if rs not in (None, "") else sl
            ic = float(ri) if ri not in (None, "") else ic
        elif offsets is not None and ipp is not None and iop is not None:
            normal = np.cross(iop[:3], iop[3:])
            ipp = tuple(float(v) for v in np.asarray(ipp) + offsets[i] * normal)
        elif n_frames > 1:
            ipp = None  # legacy multi-frame without per-frame positions: frames in file order
        out.append(FrameGeom(ipp, iop, sp, th[0] if th else None, sl, ic))
    return out


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    n = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:6]))
    return n / (np.linalg.norm(n) or 1.0)


def sort_frames(geoms: Sequence[FrameGeom], tie_break: Sequence[float]) -> list[int]:
    """Indices ordered by position projected on the slice normal (never by number or name)."""
    if any(g.position is None or g.orientation is None for g in geoms):
        return sorted(range(len(geoms)), key=lambda i: tie_break[i])
    normal = normal_of(geoms[0].orientation)  # type: ignore[arg-type]
    proj = [float(np.dot(g.position, normal)) for g in geoms]  # type: ignore[arg-type]
    return sorted(range(len(geoms)), key=lambda i: (proj[i], tie_break[i]))


def canonical_axes(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """How the Viewer lays a volume out: the voxel-axis permutation and flips bringing (slice, row,
    col) to (toward I, toward P, toward L) -- axial head to feet, coronal front to back, sagittal right
    to left -- and whether the data are oblique; None when two voxel axes share a patient axis."""
    a = affine[:3, :3]
    dominant = np.argmax(np.abs(a), axis=0)  # world axis of each voxel axis
    if sorted(dominant.tolist()) != [0, 1, 2]:
        return None
    want = {2: -1.0, 1: 1.0, 0: 1.0}  # LPS sign each canonical axis should grow towards
    order = np.array([int(np.where(dominant == w)[0][0]) for w in (2, 1, 0)])
    flips = np.array([np.sign(a[w, j]) != want[w] for w, j in zip((2, 1, 0), order, strict=True)])
    norms = np.linalg.norm(a, axis=0)
    oblique = bool(np.any(np.abs(a[dominant, range(3)]) < 0.999 * norms))
    return order, flips, oblique


def shown_last_first(affine: np.ndarray) -> bool:
    """True when the Viewer shows a volume's stored slices in reverse (e.g. an axial stack sorted
    feet to head): slice 1 on screen is then the last stored slice. The one rule behind
    `medui.reading.display.display_order` and the slice numbers in the spacing warnings."""
    canon = canonical_axes(affine)
    if canon is None:
        return False
    order, flips, _ = canon
    return bool(flips[int(np.where(order == 0)[0][0])])


def stack_affine(geoms: Sequence[FrameGeom]) -> tuple[np.ndarray, list[str], bool]:
    """Affine (slice,row,col)->LPS for frames already in order, warnings, and whether geometry is known."""
    warnings: list[str] = []
    g0 = geoms[0]
    has_geometry = True
    iop = g0.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    if g0.orientation is None:
        has_geometry = False
    if g0.pixel_spacing is None:
        warnings.append("pixel spacing is not recorded; distances are shown in pixels, not millimetres")
        has_geometry = False
    dr, dc = g0.pixel_spacing or (1.0, 1.0)
    row_cos, col_cos = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = normal_of(iop)
    origin = np.asarray(g0.position if g0.position is not None else (0.0, 0.0, 0.0), float)
    n = len(geoms)
    positioned = all(g.position is not None for g in geoms) and g0.orientation is not None
    check = n > 1 and positioned
    if check:
        first, last = np.asarray(geoms[0].position), np.asarray(geoms[-1].position)
        slice_vec = (last - first) / (n - 1)
        if np.linalg.norm(slice_vec) < 1e-6:
            slice_vec = normal * (g0.thickness or 1.0)
    else:
        slice_vec = normal * (g0.thickness or 1.0)
        if n > 1 and not positioned:
            warnings.append("frames carry no slice positions; shown in file order, "
                            f"spacing {g0.thickness or 1.0:g} mm assumed")
    affine = np.eye(4)
    affine[:3, 0] = slice_vec
    affine[:3, 1] = col_cos * dr
    affine[:3, 2] = row_cos * dc
    affine[:3, 3] = origin
    if check:
        # Slice numbers in the warnings are the Viewer's (Series.is_volume: 3+ slices with geometry).
        reverse = has_geometry and n >= 3 and shown_last_first(affine)
        warnings += _check_spacing(geoms, normal, slice_vec, reverse)
    return affine, warnings, has_geometry


MIN_RUN = 3  # gaps in a row at one spacing that make a section of a variable-spacing series


def _runs(steps: np.ndarray, tol: float) -> list[tuple[int, int, float]]:
    """Consecutive gaps of one size: (first gap, last gap, mean step) each; gap i follows slice i."""
    runs: list[tuple[int, int, float]] = []
    start = 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or abs(steps[i] - np.mean(steps[start:i])) > tol:
            runs.append((start, i - 1, float(np.mean(steps[start:i]))))
            start = i
    return runs


def _variable_spacing(proj: np.ndarray, runs: list[tuple[int, int, float]], reverse: bool) -> str:
    """'variable slice spacing: 4 mm for slices 1–14, 7 mm after' in the Viewer's numbering."""
    n = len(proj)

    def shown(native: int) -> int:
        return n - native if reverse else native + 1

    sections = sorted((min(shown(a), shown(b + 1)), max(shown(a), shown(b + 1)), step) for a, b, step in runs)
    parts = [f"{step:.3g} mm for slices {lo}–{hi}" for lo, hi, step in sections[:-1]]
    parts.append(f"{sections[-1][2]:.3g} mm after")
    mean = (proj[-1] - proj[0]) / (n - 1)
    off = float(np.max(np.abs(proj - (proj[0] + mean * np.arange(n)))))
    return (f"variable slice spacing: {', '.join(parts)}; positions are shown on a mean step of {abs(mean):.2f} mm, "
            f"up to {off:.1f} mm from where the slices were acquired")


def _check_spacing(geoms: Sequence[FrameGeom], normal: np.ndarray, slice_vec: np.ndarray,
                   reverse: bool = False) -> list[str]:
    """Missing slices, variable or irregular spacing, gantry tilt. Slice numbers are the Viewer's:
    `reverse` when it shows the stack last-first (`shown_last_first`)."""
    warnings = []
    pos = np.asarray([g.position for g in geoms], float)
    proj = pos @ normal
    steps = np.diff(proj)
    step = float(np.median(steps)) if steps.size else 0.0
    tol = max(0.02 * abs(step), 0.05)
    runs = _runs(steps, tol) if steps.size else []
    sections = [r for r in runs if r[1] - r[0] + 1 >= MIN_RUN]
    if sections and max(r[2] for r in sections) - min(r[2] for r in sections) > tol:
        warnings.append(_variable_spacing(proj, runs, reverse))
    elif steps.size >= 1 and abs(step) > 1e-6:
        big = np.nonzero(steps > 1.5 * step)[0]
        for i in big[:5]:
            missing = int(round(steps[i] / step)) - 1
            after = len(steps) - int(i) if reverse else int(i) + 1  # the gap lies between these two slices
            warnings.append(f"missing slice(s): a gap of {steps[i]:.2f} mm between slices {after} and {after + 1} "
                            f"where {step:.2f} mm is usual (about {missing} slice(s) absent)")
        if len(big) > 5:
            warnings.append(f"... and {len(big) - 5} more gaps")
        spread = float(steps.max() - steps.min())
        if len(big) == 0 and spread > max(0.01 * abs(step), 0.05):
            warnings.append(f"irregular slice spacing: steps range from {steps.min():.3f} to {steps.max():.3f} mm; "
                            "the affine uses the mean step")
    length = np.linalg.norm(slice_vec)
    if length > 1e-6:
        cos = abs(float(np.dot(slice_vec / length, normal)))
        angle = float(np.degrees(np.arccos(min(1.0, cos))))
        if angle > 0.1:
            warnings.append(f"gantry tilt of {angle:.1f} degrees: slices are sheared, not perpendicular to "
                            "their stacking direction; positions are kept as acquired (not resampled)")
    return warnings
