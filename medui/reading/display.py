"""Display maths, kept apart from any UI: windowing (DICOM linear window and VOI LUT), presets,
MONOCHROME1, orthogonal views at their physical aspect, and PNG encoding."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from medui.io.geometry import canonical_axes, shown_last_first
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


BODY_HU = -500.0  # CT 'Auto' looks at voxels above this: the body, not the air, lungs and gaps around it


def auto_window(pixels: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0, above: float | None = None) -> Window:
    """A window spanning the given percentiles of the values (sampled for speed); `above`: of the
    values above it only (when at least 1% of the sample is), e.g. the body on CT (`BODY_HU`)."""
    flat = pixels.reshape(-1)
    step = max(1, flat.size // 400_000)
    sample = flat[::step]
    if above is not None:
        inside = sample[sample > above]
        sample = inside if inside.size >= max(1, sample.size // 100) else sample
    lo, hi = np.percentile(sample, [low_pct, high_pct]) if sample.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = float(np.min(sample)), float(np.max(sample)) if sample.size else 1.0
        hi = hi if hi > lo else lo + 1.0
    return Window((float(lo) + float(hi)) / 2, float(hi) - float(lo))


def series_auto_window(series: Series) -> Window:
    """The Viewer's 'Auto' window: the 1st-99th percentiles of the values. On CT, the 5th-95th
    percentiles of the voxels above -500 HU only (the body), so a chest CT that is mostly air and
    table gets a soft-tissue window: W 274 L -19 on a 255-slice chest CT, W 459 L 0 on a 30-slice
    one (over every voxel: W 3374 L -1337; 1st-99th of the body: W 947 L 65, fat to bone)."""
    if series.modality == "CT" and not series.is_color:
        return auto_window(series.pixels, 5.0, 95.0, above=BODY_HU)
    return auto_window(series.pixels)


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
        out: np.ndarray = np.clip(image, 0, 255).astype(np.uint8)
        return 255 - out if invert else out
    width = max(float(window.width), 1.0)
    low = window.center - 0.5 - (width - 1) / 2
    scale = 255.0 / max(width - 1, 1e-6)
    out = (image - np.float32(low)) * np.float32(scale)
    np.clip(out, 0, 255, out=out)
    u8 = out.astype(np.uint8)
    return 255 - u8 if invert else u8


def _to_u8(values: np.ndarray, low: float, high: float, invert: bool) -> np.ndarray:
    """Values in [low, high] (a VOI stage's output range) to 0..255."""
    out = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / max(high - low, 1e-6))
    np.clip(np.rint(out, out=out), 0, 255, out=out)
    u8 = out.astype(np.uint8)
    return 255 - u8 if invert else u8


def apply_voi_lut(image: np.ndarray, series: Series, invert: bool = False) -> np.ndarray:
    """Grey values to uint8 through the file's VOI LUT (pydicom's `apply_voi_lut`).

    The LUT's output range is 0..2**bits-1 (its LUT Descriptor), whatever entries it uses:
    a LUT reaching a quarter of that range shows a quarter grey, not white.
    """
    from pydicom.pixels.processing import apply_voi_lut as pydicom_voi_lut

    module = series.voi if series.voi is not None and "VOILUTSequence" in series.voi else _lut_module(series)
    out = pydicom_voi_lut(np.rint(image).astype(np.int32), module, prefer_lut=True)
    bits = int(module.VOILUTSequence[0].LUTDescriptor[2])
    return _to_u8(out, 0.0, float(2**bits - 1), invert)


def _lut_module(series: Series) -> Any:
    """A VOI LUT module built from the typed `Series.voi_lut` (for a Series made without `voi`)."""
    from pydicom.dataset import Dataset

    lut = series.voi_lut
    assert lut is not None
    item = Dataset()
    item.add_new(0x00283002, "SS" if lut.first < 0 else "US", [len(lut.table) % 65536, int(lut.first), lut.bits])
    item.add_new(0x00283006, "US", np.asarray(lut.table, np.uint16).tolist())
    module = Dataset()
    module.VOILUTSequence = [item]
    return module


def voi_function(series: Series) -> str:
    """The file's VOI LUT Function: 'LINEAR' (the default), 'LINEAR_EXACT' or 'SIGMOID'."""
    return str(series.voi.get("VOILUTFunction", "LINEAR")) if series.voi is not None else "LINEAR"


def apply_voi_function(image: np.ndarray, series: Series, window: Window, invert: bool = False) -> np.ndarray:
    """Grey values to uint8 under `window` with the file's SIGMOID or LINEAR_EXACT VOI LUT Function
    (pydicom's `apply_windowing`, PS3.3 C.11.2.1.3), scaled by the function's output range."""
    from pydicom.dataset import Dataset
    from pydicom.pixels.processing import apply_windowing

    module = Dataset()
    module.PhotometricInterpretation = "MONOCHROME2"
    module.BitsStored = int(series.voi.get("BitsStored", 16))
    module.PixelRepresentation = int(series.voi.get("PixelRepresentation", 0))
    module.VOILUTFunction = voi_function(series)
    module.WindowCenter = float(window.center)
    module.WindowWidth = max(float(window.width), 1e-3)
    signed = module.PixelRepresentation == 1
    low = -(2.0 ** (module.BitsStored - 1)) if signed else 0.0
    high = 2.0 ** (module.BitsStored - 1) - 1 if signed else 2.0**module.BitsStored - 1
    return _to_u8(apply_windowing(image, module), low, high, invert)


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
    unit: str = "mm"  # of x, y and row/col spacing: 'px' when the file records no pixel spacing


def pixel_spacing_known(series: Series) -> bool:
    """False when the file records no pixel size (a PNG, a CR without Pixel Spacing): its spacing is
    then a placeholder 1 x 1 and every size must be given in pixels. The readers set it; a series
    without orientation may still know its pixel size."""
    return series.pixel_spacing_known


_AXIS_NAMES = ("x (R→L)", "y (A→P)", "z (I→S)")


def _canonical(series: Series) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Voxel-axis permutation/flips bringing the volume to (toward I, toward P, toward L)."""
    return canonical_axes(series.affine)


def native_plane(series: Series) -> str:
    """The plane a series was acquired in, by the world axis its slices are stacked along."""
    if not series.has_geometry:
        return "native"
    world = int(np.argmax(np.abs(series.affine[:3, 0])))
    return {2: "axial", 1: "coronal", 0: "sagittal"}[world]


_PLANE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}
_AXIS_LETTER = {"axial": "z", "coronal": "y", "sagittal": "x"}


def display_order(series: Series) -> np.ndarray:
    """Native slice indices in the order every page, chart and command numbers them: the Viewer's
    order of the series' native plane (axial head to feet, coronal front to back, sagittal right to
    left; file order for a single image, a short stack or one without geometry).

    Display index `d` (slice `d + 1` on screen) is native slice `display_order(series)[d]`."""
    n = series.n_slices
    return np.arange(n)[::-1].copy() if series.is_volume and shown_last_first(series.affine) else np.arange(n)


def slice_axis(series: Series) -> str:
    """The patient axis slice positions are given along: 'z', 'y' or 'x' (the native plane's), or
    'position' (along the slice normal, for a stack shown in file order); '' without geometry."""
    if not series.has_geometry:
        return ""
    canon = _canonical(series) if series.is_volume else None
    return "position" if canon is None else _AXIS_LETTER[native_plane(series)]


def slice_position_mm(series: Series, display_index: int) -> float | None:
    """Where slice `display_index` (display numbering) lies, in mm along `slice_axis(series)`: the
    value the Viewer shows for it. None when the series has no geometry."""
    if not series.has_geometry:
        return None
    n = series.n_slices
    if not 0 <= display_index < n:
        raise IndexError(f"slice {display_index + 1} does not exist: the series has {n} slice(s)")
    native = int(display_order(series)[display_index])
    pos = series.affine @ np.array([native, 0, 0, 1.0])
    if slice_axis(series) == "position":  # along the stacking direction, as `_native_view` shows it
        normal = series.affine[:3, 0]
        return float(np.dot(pos[:3], normal) / max(float(np.linalg.norm(normal)), 1e-6))
    return float(pos[{"z": 2, "y": 1, "x": 0}[slice_axis(series)]])


def slice_positions_mm(series: Series) -> list[float] | None:
    """`slice_position_mm` of every slice, in display order (None without geometry)."""
    if not series.has_geometry:
        return None
    native = display_order(series).astype(float)  # one pass for all slices, as `slice_position_mm` does each
    pos = native[:, np.newaxis] * series.affine[:3, 0] + series.affine[:3, 3]
    axis = slice_axis(series)
    if axis == "position":
        normal = series.affine[:3, 0]
        values = pos @ normal / max(float(np.linalg.norm(normal)), 1e-6)
    else:
        values = pos[:, {"z": 2, "y": 1, "x": 0}[axis]]
    return [float(v) for v in values.tolist()]


def slice_label(series: Series, display_index: int) -> str:
    """'slice 12/255 · z -31.8 mm': the number and position every caption shows for a slice."""
    text = f"slice {display_index + 1}/{series.n_slices}"
    if series.n_slices == 1 and slice_axis(series) == "position":
        return text  # one radiograph: a position along its own normal tells a reader nothing
    pos = slice_position_mm(series, display_index)
    return text if pos is None else f"{text} · {slice_axis(series)} {pos:.1f} mm"


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
                         fixed=float(index), vertical_up=False, approximate=False, n_slices=series.n_slices,
                         unit="mm" if pixel_spacing_known(series) else "px")
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
    if view.image.ndim == 2 and voi_function(series) in ("SIGMOID", "LINEAR_EXACT"):
        return apply_voi_function(view.image, series, window, invert)
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
