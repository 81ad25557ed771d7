"""Display maths, kept apart from any UI: windowing (DICOM linear window and VOI LUT), presets,
MONOCHROME1, orthogonal views at their physical aspect, and PNG encoding."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from medui.series import Series, Window

# Common CT windows (center, width) in HU.
CT_PRESETS: dict[str, Window] = {
    "Lung": Window(-600, 1500),
    "Mediastinum / soft tissue": Window(50, 350),
    "Bone": Window(400, 1800),
    "Brain": Window(40, 80),
    "Abdomen": Window(50, 400),
    "Liver": Window(60, 160),
}

PLANES = ("axial", "coronal", "sagittal")


def auto_window(pixels: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> Window:
    """A window spanning the given percentiles of the values (sampled for speed)."""
    flat = pixels.reshape(-1)
    step = max(1, flat.size // 400_000)
    sample = flat[::step]
    lo, hi = np.percentile(sample, [low_pct, high_pct]) if sample.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(np.min(sample)), float(np.max(sample)) if sample.size else 1.0
        hi = hi if hi > lo else lo + 1.0
    return Window((float(lo) + float(hi)) / 2, float(hi) - float(lo))


def default_window(series: Series) -> Window:
    """The DICOM window when the file has one; otherwise percentiles (MR, X-ray, PNG)."""
    if series.window is not None:
        return series.window
    if series.modality == "CT":
        return CT_PRESETS["Mediastinum / soft tissue"]
    return auto_window(series.pixels)


def shows_inverted(series: Series) -> bool:
    """MONOCHROME1 stores bright as low values: it is displayed inverted."""
    return series.photometric == "MONOCHROME1"


def apply_window(image: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
    """Grey values to uint8 with the DICOM linear window (PS3.3 C.11.2.1.2.1)."""
    if image.ndim == 3:  # colour is shown as stored
        out = np.clip(image, 0, 255).astype(np.uint8)
        return 255 - out if invert else out
    width = max(float(window.width), 1.0)
    low = window.center - 0.5 - (width - 1) / 2
    scale = 255.0 / max(width - 1, 1e-6)
    out = (image - np.float32(low)) * np.float32(scale)
    np.clip(out, 0, 255, out=out)
    u8 = out.astype(np.uint8)
    return 255 - u8 if invert else u8


def apply_voi_lut(image: np.ndarray, series: Series, invert: bool = False) -> np.ndarray:
    """Grey values to uint8 through the file's VOI LUT."""
    lut = series.voi_lut
    assert lut is not None
    idx = np.clip(np.rint(image - lut.first), 0, len(lut.table) - 1).astype(np.intp)
    top = max(float(lut.table.max()), 1.0)
    u8 = (lut.table[idx] * (255.0 / top)).astype(np.uint8)
    return 255 - u8 if invert else u8


@dataclass(frozen=True)
class PlaneView:
    """A 2-D slice ready to show: pixels, physical pixel size and the patient coordinates of its grid."""

    image: np.ndarray  # (rows, cols) or (rows, cols, 3), modality values
    row_spacing: float
    col_spacing: float
    x: np.ndarray  # patient coordinate (mm) of each column along the horizontal axis
    y: np.ndarray  # patient coordinate (mm) of each row along the vertical axis
    labels: tuple[str, str, str]  # names of horizontal, vertical and fixed patient axes
    fixed: float  # patient coordinate of the slice along the fixed axis
    vertical_up: bool  # True when patient coordinates grow upwards on screen (coronal/sagittal)
    approximate: bool = False  # oblique data shown on the nearest patient axes
    n_slices: int = 1


_AXIS_NAMES = ("x (R→L)", "y (A→P)", "z (I→S)")


def _canonical(series: Series) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Voxel-axis permutation/flips bringing the volume to (toward I, toward P, toward L)."""
    a = series.affine[:3, :3]
    dominant = np.argmax(np.abs(a), axis=0)  # world axis of each voxel axis
    if sorted(dominant.tolist()) != [0, 1, 2]:
        return None
    want = {2: -1.0, 1: 1.0, 0: 1.0}  # LPS sign each canonical axis should grow towards
    order = np.array([int(np.where(dominant == w)[0][0]) for w in (2, 1, 0)])
    flips = np.array([np.sign(a[w, j]) != want[w] for w, j in zip((2, 1, 0), order)])
    norms = np.linalg.norm(a, axis=0)
    oblique = bool(np.any(np.abs(a[dominant, range(3)]) < 0.999 * norms))
    return order, flips, oblique


def native_plane(series: Series) -> str:
    """The plane a series was acquired in, by the world axis its slices are stacked along."""
    if not series.has_geometry:
        return "native"
    world = int(np.argmax(np.abs(series.affine[:3, 0])))
    return {2: "axial", 1: "coronal", 0: "sagittal"}[world]


def plane_count(series: Series, plane: str) -> int:
    """How many slices the slider offers in a plane."""
    if plane == "native" or not series.is_volume:
        return series.n_slices
    canon = _canonical(series)
    if canon is None:
        return series.n_slices
    order, _, _ = canon
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    return int(series.pixels.shape[order[axis]])


def plane_view(series: Series, plane: str, index: int) -> PlaneView:
    """Slice `index` of a series in the given plane ('native', 'axial', 'coronal', 'sagittal')."""
    canon = _canonical(series) if series.is_volume and plane != "native" else None
    if canon is None:
        return _native_view(series, index)
    order, flips, oblique = canon
    vol = series.pixels
    idx_grid = [np.arange(vol.shape[j]) for j in range(3)]
    perm = tuple(order.tolist()) + ((3,) if vol.ndim == 4 else ())
    vol = np.transpose(vol, perm)
    for k in range(3):
        if flips[k]:
            vol = np.flip(vol, axis=k)
            idx_grid[order[k]] = idx_grid[order[k]][::-1]
    spacing = np.linalg.norm(series.affine[:3, :3], axis=0)[order]
    axis = {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    index = int(np.clip(index, 0, vol.shape[axis] - 1))
    image = vol[(slice(None),) * axis + (index,)]  # a view: np.take would copy the whole volume
    # Patient coordinate (LPS mm) along each canonical axis, for the voxel indices shown.
    coords = []
    for k, world_axis in enumerate((2, 1, 0)):
        vox = np.zeros((len(idx_grid[order[k]]), 4))
        vox[:, order[k]] = idx_grid[order[k]]
        vox[:, 3] = 1.0
        coords.append((vox @ series.affine.T)[:, world_axis])
    names = {0: (_AXIS_NAMES[0], _AXIS_NAMES[1], _AXIS_NAMES[2]),  # axial: rows toward P, cols toward L
             1: (_AXIS_NAMES[0], _AXIS_NAMES[2], _AXIS_NAMES[1]),  # coronal: rows toward I, cols toward L
             2: (_AXIS_NAMES[1], _AXIS_NAMES[2], _AXIS_NAMES[0])}[axis]  # sagittal: rows toward I, cols toward P
    rows_axis, cols_axis = [k for k in range(3) if k != axis]
    return PlaneView(image=image, row_spacing=float(spacing[rows_axis]), col_spacing=float(spacing[cols_axis]),
                     x=coords[cols_axis], y=coords[rows_axis], labels=names, fixed=float(coords[axis][index]),
                     vertical_up=axis != 0, approximate=oblique, n_slices=int(vol.shape[axis]))


def _native_view(series: Series, index: int) -> PlaneView:
    index = int(np.clip(index, 0, series.n_slices - 1))
    image = series.pixels[index]
    _, dr, dc = series.spacing
    rows, cols = image.shape[:2]
    x, y = np.arange(cols) * dc, np.arange(rows) * dr
    if not series.has_geometry:
        return PlaneView(image=image, row_spacing=dr, col_spacing=dc, x=x, y=y, labels=("column", "row", "frame"),
                         fixed=float(index), vertical_up=False, approximate=False, n_slices=series.n_slices)
    # In-plane distances from the first pixel; the slice position along the stacking direction.
    pos = series.affine @ np.array([index, 0, 0, 1.0])
    normal = series.affine[:3, 0]
    fixed = float(np.dot(pos[:3], normal) / max(float(np.linalg.norm(normal)), 1e-6))
    return PlaneView(image=image, row_spacing=dr, col_spacing=dc, x=x, y=y,
                     labels=("in-plane →", "in-plane ↓", "slice"), fixed=fixed, vertical_up=False,
                     approximate=False, n_slices=series.n_slices)


def render(series: Series, view: PlaneView, window: Window, invert: bool, use_voi_lut: bool = False) -> np.ndarray:
    """uint8 pixels of a view under a window (or the VOI LUT), MONOCHROME1 handled by the caller's `invert`."""
    if use_voi_lut and series.voi_lut is not None and view.image.ndim == 2:
        return apply_voi_lut(view.image, series, invert)
    return apply_window(view.image, window, invert)


def png_bytes(u8: np.ndarray, compression: int = 1) -> bytes:
    """PNG of a uint8 grey or RGB image (fast compression: it travels to a browser once)."""
    import cv2

    img = u8 if u8.ndim == 2 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {u8.shape}")
    return buf.tobytes()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(series: Series, size: int = 128) -> np.ndarray:
    """A small uint8 preview of the middle slice under the default window."""
    import cv2

    view = _native_view(series, series.n_slices // 2)
    u8 = apply_window(view.image, default_window(series), shows_inverted(series))
    h, w = u8.shape[:2]
    aspect = (h * view.row_spacing) / max(w * view.col_spacing, 1e-6)
    tw, th = (size, max(1, int(size * aspect))) if aspect <= 1 else (max(1, int(size / aspect)), size)
    return cv2.resize(u8, (tw, th), interpolation=cv2.INTER_AREA)
