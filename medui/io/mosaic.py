"""Siemens MOSAIC images: one DICOM file whose pixel data is a grid of tiles, each tile one slice.

Found by 'MOSAIC' in ImageType (0008,0008). The number of slices comes from the Siemens CSA image
header (0029,1010) 'NumberOfImagesInMosaic', else the private tag (0019,100A); the slice normal from the
CSA 'SliceNormalVector', else the cross product of ImageOrientationPatient. The grid is ceil(sqrt(n))
tiles a side and slice k is the k-th tile in row-major order. ImagePositionPatient of a mosaic is the
top-left corner of the *whole* grid, so the first slice is moved to its own top-left voxel (the same
correction as dcm2niix and nibabel's MosaicWrapper), and slice k sits k slice spacings further along
the normal. A mosaic header that does not add up is read as one plain 2-D image, with a warning.

UIH (United Imaging) grids follow dcm2niix (rordenlab/dcm2niix, console/nii_dicom.cpp), not a public
vendor document: a file is a UIH grid when Manufacturer (0008,0070) starts with 'UI' (dcmStrManufacturer)
and it carries the private tag (0065,1050) NumberOfImagesInGridUIH, a DS read as the number of slices
(readDICOMx, case kNumberOfImagesInGridUIH; like dcm2niix, the tag is read whatever its private creator,
and ImageType need not say MOSAIC). The grid has ceil(sqrt(n)) tiles a row and ceil(n / that) rows of tiles
(nii_demosaic with isUIH: "Siemens store 20 images as 5x5 grid, UIH as 5rows, 4 Col", dcm2niix issue 225);
slice k is the k-th tile in row-major order. ImagePositionPatient is used as it stands for the first slice:
set_nii_header_x applies the mosaic corner correction to Siemens only ("ignore for UIH grid"). A single grid
records no slice direction, so dcm2niix guesses it (verify_slice_dir, "Unable to determine slice
direction"): the cross product of ImageOrientationPatient, negated when its three components sum to less
than zero; slice k sits k slice spacings (SpacingBetweenSlices, else SliceThickness) along it. MedUI places
the slices the same way and says that the direction is dcm2niix's guess. Stricter than dcm2niix, a count
that is not a whole number of at least 1 or a grid the pixels do not divide into is read as one 2-D image
with a warning (dcm2niix truncates the count and divides Rows and Columns without checking); a count of 1 is
a plain image, as in dcm2niix.
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
    """How a mosaic file is cut: `n` slices of tile_rows x tile_cols on a layout `grid` tiles wide and
    `grid_rows` tiles high (a Siemens mosaic is square: grid_rows == grid)."""

    n: int
    tile_rows: int
    tile_cols: int
    grid: int
    grid_rows: int = 0  # 0: the same as `grid`
    vendor: str = "Siemens"


UIH_GRID_TAG = (0x0065, 0x1050)  # NumberOfImagesInGridUIH (DS), dcm2niix kNumberOfImagesInGridUIH


def _uih_grid_element(ds: Any) -> Any:
    """The (0065,1050) element of a UIH file, or None: not UIH, absent, or a sequence (a dcm2niix-derived
    reader, memoryDCM.cpp, also defines this tag as kMRVFrameSequenceUIH, an SQ: no grid count)."""
    maker = str(ds.get("Manufacturer", "") or "").strip().upper()
    if not maker.startswith("UI"):  # dcm2niix dcmStrManufacturer: 'UI' -> kMANUFACTURER_UIH
        return None
    elem = ds.get(UIH_GRID_TAG)
    return None if elem is None or elem.VR == "SQ" else elem


def is_mosaic(ds: Any) -> bool:
    """True when ImageType (0008,0008) says MOSAIC, or for a UIH grid (cheap: no private header is parsed)."""
    if _uih_grid_element(ds) is not None:
        return True
    image_type = ds.get("ImageType")
    if image_type is None:
        return False
    values = [image_type] if isinstance(image_type, str | bytes) else list(image_type)
    return any(str(v).strip().upper() == "MOSAIC" for v in values)


def _uih_count(elem: Any) -> tuple[int | None, str]:
    """The slice count of a UIH grid, or None and the text that is no whole number."""
    value = elem.value
    if isinstance(value, bytes):  # implicit VR: an unknown private tag comes as raw bytes
        value = value.decode("ascii", "replace")
    elif not isinstance(value, str) and isinstance(value, Sequence):  # several values: no count
        if len(value) != 1:
            return None, "\\".join(str(v) for v in value)
        value = value[0]
    text = str(value).strip("\x00 ")
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None, text
    if not math.isfinite(number) or number != int(number):
        return None, text
    return int(number), text


def _uih_layout(ds: Any, elem: Any, n_frames: int,
                geoms: Sequence[FrameGeom]) -> tuple[Mosaic | None, list[FrameGeom], list[str]]:
    """A UIH grid (module docstring): how to cut it, one FrameGeom per slice, warnings."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    plain = f"the file is shown as one 2-D image of {rows}x{cols} pixels (the whole grid)"
    n, text = _uih_count(elem)
    shown = text if len(text) <= 24 else text[:24] + "..."
    n_cols = math.isqrt(n - 1) + 1 if n is not None and n > 0 else 0
    n_rows = -(-n // n_cols) if n is not None and n_cols else 0
    problem = None
    if n is None or n < 1:
        problem = f"NumberOfImagesInGridUIH (0065,1050) is '{shown}'; a whole number of at least 1 was expected"
    elif n == 1:
        return None, list(geoms), []  # one tile is the whole image, as dcm2niix reads it
    elif rows % n_rows or cols % n_cols:
        problem = (f"{n} slices make a grid of {n_rows} rows of {n_cols} tiles, but Rows x Columns (0028,0010/0011) "
                   f"= {rows}x{cols} do not divide into {n_rows}x{n_cols} equal tiles")
    else:
        problem = _unplaceable("a grid", ds, n_frames, geoms)
    if problem is not None:
        return None, list(geoms), [f"UIH grid (MOSAIC image): {problem}; {plain}"]
    assert n is not None
    mosaic = Mosaic(n, rows // n_rows, cols // n_cols, n_cols, n_rows, "UIH")
    g0 = geoms[0]
    orientation = g0.orientation
    assert orientation is not None
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
    if normal.sum() < 0:  # dcm2niix verify_slice_dir: flip when the slice vector's components sum below 0
        normal = -normal
    notes = ["this UIH grid records no slice direction: its slices are stacked along the normal of "
             "ImageOrientationPatient (0020,0037) as dcm2niix guesses it; check whether the slices are flipped"]
    step = g0.thickness
    if step is None or not step > 0:
        step = 1.0
        notes.append("this mosaic records neither SpacingBetweenSlices (0018,0088) nor SliceThickness "
                     "(0018,0050); 1 mm between slices is assumed")
    out = []
    for k in range(n):
        pos = None if g0.position is None else tuple(float(v) for v in np.asarray(g0.position, float)
                                                        + k * step * normal)
        out.append(replace(g0, position=pos, thickness=step))
    return mosaic, out, notes


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
    uih = _uih_grid_element(ds)
    if uih is not None:
        return _uih_layout(ds, uih, n_frames, geoms)
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
    else:
        problem = _unplaceable("a mosaic", ds, n_frames, geoms)
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


def _unplaceable(what: str, ds: Any, n_frames: int, geoms: Sequence[FrameGeom]) -> str | None:
    """Why a tiled image cannot be cut into placed slices, whatever its vendor; None when it can."""
    if n_frames != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return f"{what} must be one greyscale frame, but this file has several frames or colour samples"
    if geoms[0].orientation is None:
        return "ImageOrientationPatient (0020,0037) is missing or invalid, so the slices cannot be placed"
    return None
