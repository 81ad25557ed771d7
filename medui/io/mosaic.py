"""Siemens MOSAIC images: one DICOM file whose pixel data is a grid of tiles, each tile one slice.

Found by 'MOSAIC' in ImageType (0008,0008). The number of slices comes from the Siemens CSA image
header (0029,1010) 'NumberOfImagesInMosaic', else the private tag (0019,100A); the slice normal from the
CSA 'SliceNormalVector', else the cross product of ImageOrientationPatient. The grid is ceil(sqrt(n))
tiles a side and slice k is the k-th tile in row-major order. ImagePositionPatient of a mosaic is the
top-left corner of the *whole* grid, so the first slice is moved to its own top-left voxel (the same
correction as dcm2niix and nibabel's MosaicWrapper), and slice k sits k slice spacings further along
the normal. A mosaic header that does not add up is read as one plain 2-D image, with a warning.

UIH (United Imaging) mosaics are not handled: their private tags are not documented publicly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from medui.io.geometry import FrameGeom


@dataclass(frozen=True)
class Mosaic:
    """How a mosaic file is cut: `n` slices of tile_rows x tile_cols on a `grid` x `grid` layout."""

    n: int
    tile_rows: int
    tile_cols: int
    grid: int


def is_mosaic(ds: Any) -> bool:
    """True when ImageType (0008,0008) says MOSAIC (cheap: no private header is parsed)."""
    image_type = ds.get("ImageType")
    if image_type is None:
        return False
    values = [image_type] if isinstance(image_type, str | bytes) else list(image_type)
    return any(str(v).strip().upper() == "MOSAIC" for v in values)


def _csa_tags(ds: Any) -> dict[str, Any]:
    """The tags of the Siemens CSA image header (0029,1010), or {} when absent or unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # nibabel.nicom: "DICOM readers are highly experimental"
            from nibabel.nicom import csareader

        header = csareader.get_csa_header(ds, "image")  # type: ignore[no-untyped-call]
    except Exception:  # a damaged CSA header is no reason to lose the image
        return {}
    tags = header.get("tags") if isinstance(header, dict) else None
    return tags if isinstance(tags, dict) else {}


def _csa_items(tags: dict[str, Any], name: str) -> list[Any]:
    entry = tags.get(name)
    items = entry.get("items") if isinstance(entry, dict) else None
    return list(items) if isinstance(items, list) else []


def _n_images(ds: Any, tags: dict[str, Any]) -> tuple[int | None, str]:
    """Number of slices in the mosaic and where it was found."""
    items = _csa_items(tags, "NumberOfImagesInMosaic")
    if items:
        try:
            return int(items[0]), "the CSA image header (0029,1010) 'NumberOfImagesInMosaic'"
        except (TypeError, ValueError, OverflowError):
            pass
    elem = ds.get((0x0019, 0x100A))
    if elem is not None:
        try:
            value = elem.value
            if isinstance(value, bytes):
                value = int.from_bytes(value[:2], "little")
            elif isinstance(value, list | tuple):
                value = value[0]
            return int(value), "the Siemens private tag (0019,100A) NumberOfImagesInMosaic"
        except (TypeError, ValueError, OverflowError, IndexError):
            pass
    return None, "neither the CSA image header (0029,1010) nor the private tag (0019,100A)"


def _normal(tags: dict[str, Any], orientation: Sequence[float]) -> tuple[np.ndarray, str | None]:
    """The slice normal: CSA SliceNormalVector when it is a unit vector perpendicular to the image
    plane, else the cross product of ImageOrientationPatient (with a warning when the CSA one is bad)."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    cross = np.cross(row, col)
    items = _csa_items(tags, "SliceNormalVector")
    if not items:
        return cross, None
    try:
        vec = np.asarray([float(v) for v in items], float)
    except (TypeError, ValueError):
        vec = np.zeros(0)
    if vec.shape == (3,) and np.all(np.isfinite(vec)) and abs(np.linalg.norm(vec) - 1) < 0.01 \
            and abs(float(vec @ row)) < 0.01 and abs(float(vec @ col)) < 0.01:
        return vec, None
    return cross, ("the CSA 'SliceNormalVector' of this mosaic is not a unit vector perpendicular to "
                   "ImageOrientationPatient (0020,0037); the slices are stacked along the orientation's normal")


def layout(ds: Any, n_frames: int, geoms: Sequence[FrameGeom]) -> tuple[Mosaic | None, list[FrameGeom], list[str]]:
    """For a MOSAIC file: how to cut it, one FrameGeom per slice, and warnings. A header that does not
    add up gives (None, the file's own geometry, why it is shown as one 2-D image)."""
    tags = _csa_tags(ds)
    n, source = _n_images(ds, tags)
    rows, cols = int(ds.Rows), int(ds.Columns)
    plain = f"the file is shown as one 2-D image of {rows}x{cols} pixels (the whole grid)"
    if n is None:
        return None, list(geoms), [f"MOSAIC image without its number of slices ({source}); {plain}"]
    grid = math.isqrt(max(n - 1, 0)) + 1 if n > 0 else 0
    problem = None
    if n < 1:
        problem = f"NumberOfImagesInMosaic is {n} in {source}; at least 1 was expected"
    elif rows % grid or cols % grid:
        problem = (f"{n} slices make a {grid}x{grid} grid, but Rows x Columns (0028,0010/0011) = {rows}x{cols} "
                   f"do not divide into {grid}x{grid} equal tiles")
    elif n_frames != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        problem = "a mosaic must be one greyscale frame, but this file has several frames or colour samples"
    elif geoms[0].orientation is None:
        problem = "ImageOrientationPatient (0020,0037) is missing or invalid, so the slices cannot be placed"
    if problem is not None:
        return None, list(geoms), [f"MOSAIC image: {problem}; {plain}"]
    mosaic = Mosaic(n, rows // grid, cols // grid, grid)
    g0 = geoms[0]
    orientation = g0.orientation
    assert orientation is not None
    normal, warning = _normal(tags, orientation)
    warnings = [warning] if warning else []
    step = g0.thickness
    if step is None or not step > 0:
        step = 1.0
        warnings.append("this mosaic records neither SpacingBetweenSlices (0018,0088) nor SliceThickness "
                        "(0018,0050); 1 mm between slices is assumed")
    first: tuple[float, ...] | None = None
    if g0.position is not None:
        dr, dc = g0.pixel_spacing or (1.0, 1.0)
        row_cos, col_cos = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
        shift = col_cos * dr * (rows - mosaic.tile_rows) / 2 + row_cos * dc * (cols - mosaic.tile_cols) / 2
        first = tuple(float(v) for v in np.asarray(g0.position, float) + shift)
    out = []
    for k in range(n):
        pos = None if first is None else tuple(float(v) for v in np.asarray(first) + k * step * normal)
        out.append(replace(g0, position=pos, thickness=step))
    return mosaic, out, warnings


def detile(plane: np.ndarray, tile_rows: int, tile_cols: int) -> np.ndarray | str:
    """The tiles of a mosaic plane (rows, cols) in row-major order: (grid*grid, tile_rows, tile_cols),
    or why it cannot be cut."""
    if plane.ndim != 2 or tile_rows < 1 or tile_cols < 1 or plane.shape[0] % tile_rows or plane.shape[1] % tile_cols:
        return (f"its pixel data decoded to {'x'.join(map(str, plane.shape))}, which does not divide into mosaic "
                f"tiles of {tile_rows}x{tile_cols}")
    gr, gc = plane.shape[0] // tile_rows, plane.shape[1] // tile_cols
    return plane.reshape(gr, tile_rows, gc, tile_cols).swapaxes(1, 2).reshape(gr * gc, tile_rows, tile_cols)


def tile_frame(k: int) -> int:
    """The frame number a decode target uses for tile k of a mosaic (negative: never a real frame)."""
    return -1 - k


def volume_labels(keys: Sequence[tuple[str, float]]) -> tuple[list[str], list[int]]:
    """For mosaic files given as (series UID, instance number): 'volume k of N' within their series
    (each mosaic file is one volume: a b-value, a time point), and the files' order by series then
    instance number."""
    totals: dict[str, int] = {}
    for uid, _ in keys:
        totals[uid] = totals.get(uid, 0) + 1
    order = sorted(range(len(keys)), key=lambda i: (keys[i][0], keys[i][1], i))
    labels = [""] * len(keys)
    seen: dict[str, int] = {}
    for i in order:
        uid = keys[i][0]
        seen[uid] = seen.get(uid, 0) + 1
        labels[i] = f"volume {seen[uid]} of {totals[uid]}" if totals[uid] > 1 else ""
    return labels, order


def described(ds: Any, mosaic: Mosaic | None, label: str) -> str:
    """The series description a user sees; a mosaic says so, and which volume of its series it is."""
    text = str(ds.get("SeriesDescription", "") or ds.get("StudyDescription", "") or "")
    if mosaic is not None:
        text = f"{text} (mosaic of {mosaic.n} slices{', ' + label if label else ''})".strip()
    return text
