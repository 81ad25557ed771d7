"""Slice geometry: per-frame position/orientation from DICOM headers (as arrays: `FrameTable`), stack
ordering and affines; the spacing checks a radiologist cares about are in `medui.io.spacing`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from medui.errors import InvalidHeaderError
from medui.io.spacing import check_spacing


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


def _row(values: Sequence[float] | None, n: int) -> np.ndarray:
    return np.asarray(values if values is not None else [np.nan] * n, float)


def _uniform(a: np.ndarray) -> bool:
    """True for a column that is one row repeated without copies (np.broadcast_to)."""
    return a.shape[0] > 1 and a.strides[0] == 0


def _take(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    if _uniform(a) or a.shape[0] == 1:
        count = int(index.sum()) if index.dtype == bool else len(index)
        return np.broadcast_to(a[:1], (count, *a.shape[1:]))
    picked: np.ndarray = a[index]
    return picked


class FrameTable(Sequence[FrameGeom]):
    """The geometry and rescale of all frames of an instance or a stack, one row a frame, as arrays
    (NaN where unknown). A value shared by every frame is one row broadcast (no copies), so a header
    promising millions of frames costs a few arrays, not millions of objects. Indexing gives a FrameGeom."""

    __slots__ = ("position", "orientation", "spacing", "thickness", "slope", "intercept")

    def __init__(self, position: np.ndarray, orientation: np.ndarray, spacing: np.ndarray, thickness: np.ndarray,
                 slope: np.ndarray, intercept: np.ndarray) -> None:
        self.position = position  # (n, 3) LPS mm of the top-left voxel centre
        self.orientation = orientation  # (n, 6) row cosine then column cosine
        self.spacing = spacing  # (n, 2) between rows, between columns (mm)
        self.thickness = thickness  # (n,)
        self.slope = slope  # (n,)
        self.intercept = intercept  # (n,)

    @classmethod
    def uniform(cls, g: FrameGeom, n: int) -> FrameTable:
        """`n` frames that all share `g`."""
        def rep(row: np.ndarray) -> np.ndarray:
            return np.broadcast_to(row[np.newaxis], (n, *row.shape))
        return cls(rep(_row(g.position, 3)), rep(_row(g.orientation, 6)), rep(_row(g.pixel_spacing, 2)),
                   rep(np.asarray(np.nan if g.thickness is None else g.thickness, float)),
                   rep(np.asarray(g.slope, float)), rep(np.asarray(g.intercept, float)))

    @classmethod
    def of(cls, geoms: Sequence[FrameGeom]) -> FrameTable:
        """A table of a few FrameGeoms (a mosaic's tiles, a test's frames)."""
        if isinstance(geoms, FrameTable):
            return geoms
        return cls.concat([cls.uniform(g, 1) for g in geoms])

    @classmethod
    def concat(cls, tables: Sequence[FrameTable]) -> FrameTable:
        if len(tables) == 1:
            return tables[0]
        return cls(*(np.concatenate([getattr(t, name) for t in tables]) for name in cls.__slots__))

    def take(self, index: np.ndarray) -> FrameTable:
        """The rows at `index` (integers, or a boolean mask)."""
        return FrameTable(*(_take(getattr(self, name), index) for name in self.__slots__))

    def __len__(self) -> int:
        return int(self.slope.shape[0])

    @overload
    def __getitem__(self, i: int) -> FrameGeom: ...
    @overload
    def __getitem__(self, i: slice) -> FrameTable: ...

    def __getitem__(self, i: int | slice) -> FrameGeom | FrameTable:
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        if not -len(self) <= i < len(self):
            raise IndexError(i)

        def known(a: np.ndarray) -> tuple[float, ...] | None:
            return tuple(float(v) for v in a[i]) if np.all(np.isfinite(a[i])) else None
        th = float(self.thickness[i])
        return FrameGeom(known(self.position), known(self.orientation), known(self.spacing),
                         th if np.isfinite(th) else None, float(self.slope[i]), float(self.intercept[i]))

    @property
    def positioned(self) -> bool:
        """Every frame has a position and an orientation."""
        return bool(np.isfinite(self.position).all() and np.isfinite(self.orientation).all())

    def checked_orientation(self) -> FrameTable:
        """Orientations that are no pair of unit, perpendicular cosines (all zero, parallel, ...) removed:
        such a one would make a singular affine downstream."""
        o = self.orientation[:1] if _uniform(self.orientation) else self.orientation
        row, col = o[:, :3], o[:, 3:6]
        with np.errstate(invalid="ignore"):
            good = ((np.abs(np.linalg.norm(row, axis=1) - 1) < 0.01) & (np.abs(np.linalg.norm(col, axis=1) - 1) < 0.01)
                    & (np.abs(np.einsum("ij,ij->i", row, col)) < 0.01))
        if good.all():
            return self
        fixed = np.where(good[:, np.newaxis], o, np.nan)
        if o.shape[0] == 1:
            fixed = np.broadcast_to(fixed, self.orientation.shape)
        return FrameTable(self.position, fixed, self.spacing, self.thickness, self.slope, self.intercept)


def functional_value(ds: Any, index: int, seq: str, attr: str) -> Any:
    """An attribute of an enhanced multi-frame functional group: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    candidates = []
    if per_frame is not None and index < len(per_frame):
        candidates.append(per_frame[index])
    if shared:
        candidates.append(shared[0])
    return _group_value(candidates, seq, attr)


def _group_value(groups: Sequence[Any], seq: str, attr: str) -> Any:
    for group in groups:
        items = group.get(seq)
        if items and attr in items[0]:
            return items[0][attr].value
    return None


# What the functional groups hold per frame: (sequence, attribute).
_FUNCTIONAL = (("PlanePositionSequence", "ImagePositionPatient"),
               ("PlaneOrientationSequence", "ImageOrientationPatient"),
               ("PixelMeasuresSequence", "PixelSpacing"), ("PixelMeasuresSequence", "SpacingBetweenSlices"),
               ("PixelMeasuresSequence", "SliceThickness"), ("PixelValueTransformationSequence", "RescaleSlope"),
               ("PixelValueTransformationSequence", "RescaleIntercept"))


def _many_floats(ds: Any, keyword: str, n: int) -> np.ndarray | None:
    """A multi-valued decimal attribute of `n` finite values as an array (parsed in one call from the
    raw bytes: millions of values cost a fraction of a second), or None."""
    import warnings

    elem = ds.get_item(keyword) if keyword in ds else None
    if elem is None or elem.value is None:
        return None
    raw = elem.value
    try:
        if isinstance(raw, (bytes, str)):
            text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                out = np.fromstring(text, sep="\\")
        else:  # already converted by pydicom: a number or a MultiValue of them
            out = np.asarray([float(v) for v in raw] if hasattr(raw, "__iter__") else [float(raw)], float)
    except (TypeError, ValueError, DeprecationWarning):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def frame_geometries(ds: Any, n_frames: int, seconds: float = 10.0) -> FrameTable:
    """Geometry and rescale of every frame of a (possibly enhanced multi-frame) dataset, as arrays;
    per-frame functional groups are given up after `seconds` (InvalidHeaderError)."""
    top_iop = _floats(ds.get("ImageOrientationPatient"), 6)
    top_ipp = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _positive(_floats(ds.get("PixelSpacing"), 2)) or _positive(_floats(ds.get("ImagerPixelSpacing"), 2))
    thickness = _floats([ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")], 1)
    slope = float(ds.get("RescaleSlope", ds.get("DoseGridScaling", 1.0)) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    top = FrameGeom(top_ipp, top_iop, spacing, thickness[0] if thickness else None, slope, intercept)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        return _enhanced(ds, n_frames, top, seconds)
    table = FrameTable.uniform(top, n_frames)
    if n_frames > 1:
        offsets = _many_floats(ds, "GridFrameOffsetVector", n_frames)
        if offsets is not None and top_ipp is not None and top_iop is not None:
            normal = np.cross(top_iop[:3], top_iop[3:])
            table.position = np.asarray(top_ipp) + offsets[:, np.newaxis] * normal
        else:
            table.position = np.broadcast_to(np.full(3, np.nan), (n_frames, 3))  # frames in file order
    return table


def _enhanced(ds: Any, n_frames: int, top: FrameGeom, seconds: float) -> FrameTable:
    """Per-frame values of an enhanced multi-frame object, each from its frame's functional groups,
    else the shared ones, else the top level. pydicom parses each frame's groups when they are first
    read (~0.3 ms a frame), so reading them stops with InvalidHeaderError after `seconds`."""
    import time

    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = [shared_seq[0]] if shared_seq else []
    fallback = [_group_value(shared, seq, attr) for seq, attr in _FUNCTIONAL]
    deadline = time.monotonic() + seconds
    rows = []
    for i in range(min(n_frames, len(per_frame))):
        if i % 256 == 255 and time.monotonic() > deadline:
            raise InvalidHeaderError(
                f"took more than {seconds:g} s to read the per-frame functional groups (5200,9230) of its "
                f"{n_frames} frames ({i} read): a damaged or hostile file. Raise MEDUI_HEADER_TIMEOUT_S if it is "
                "a real image")
        rows.append([_group_value([per_frame[i], *shared], seq, attr) for seq, attr in _FUNCTIONAL])
    rows += [fallback] * (n_frames - len(rows))
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(_FUNCTIONAL)
    ipp = [_floats(v, 3) or top.position for v in cols[0]]
    iop = [_floats(v, 6) or top.orientation for v in cols[1]]
    sp = [_positive(_floats(v, 2)) or top.pixel_spacing for v in cols[2]]
    th = [_floats([a or b], 1) for a, b in zip(cols[3], cols[4], strict=True)]
    return FrameTable(
        np.array([_row(v, 3) for v in ipp]).reshape(n_frames, 3),
        np.array([_row(v, 6) for v in iop]).reshape(n_frames, 6),
        np.array([_row(v, 2) for v in sp]).reshape(n_frames, 2),
        np.array([t[0] if t else (np.nan if top.thickness is None else top.thickness) for t in th], float),
        np.array([float(v) if v not in (None, "") else top.slope for v in cols[5]], float),
        np.array([float(v) if v not in (None, "") else top.intercept for v in cols[6]], float))


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    n = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:6]))
    return n / (np.linalg.norm(n) or 1.0)


def sort_order(table: FrameTable, tie_break: np.ndarray) -> np.ndarray:
    """Indices ordered by position projected on the slice normal (never by number or name), ties by
    `tie_break`; in `tie_break` order alone when a frame has no position or orientation."""
    if not table.positioned:
        return np.argsort(tie_break, kind="stable")
    proj = table.position @ normal_of(table.orientation[0])
    return np.lexsort((tie_break, proj))


def sort_frames(geoms: Sequence[FrameGeom], tie_break: Sequence[float]) -> list[int]:
    """`sort_order` for a list of frames."""
    return [int(i) for i in sort_order(FrameTable.of(geoms), np.asarray(tie_break, float))]


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
    """Affine (slice,row,col)->LPS for frames already in order (a FrameTable, or FrameGeoms), warnings,
    and whether geometry is known."""
    table = FrameTable.of(geoms)
    warnings: list[str] = []
    g0 = table[0]
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
    n = len(table)
    positioned = bool(np.isfinite(table.position).all()) and g0.orientation is not None
    check = n > 1 and positioned
    if check:
        first, last = table.position[0], table.position[-1]
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
        warnings += check_spacing(table.position, normal, slice_vec, reverse)
    return affine, warnings, has_geometry
