"""A series as the browser viewer receives it: a small JSON description and the voxels in chunks of
slices (pure numpy, no UI).

The voxels travel once, compactly: int16 when the values are whole numbers that fit (uint16-range
data shifted by an intercept), uint8 RGB for colour, float32 otherwise; little-endian, in the
Viewer's display order (`display_order`), so slice k of the browser is slice k of every page. The
affine is NIfTI's (RAS mm for voxel (col, row, display slice)), which is what NiiVue reads; planes
give, for axial/coronal/sagittal, the voxel axis a plane steps along and whether the Viewer's
numbering runs against it (`medui.io.geometry.canonical_axes`, the rule behind `plane_view`).
A volume too large for a browser is sent subsampled (in-plane first), with a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medui.io.geometry import canonical_axes
from medui.reading.display import (
    CT_PRESETS,
    display_order,
    native_plane,
    pixel_spacing_known,
    series_auto_window,
    shows_inverted,
    slice_axis,
    slice_positions_mm,
    voi_function,
)
from medui.series import Series, Window

MAX_VOXELS = 80_000_000  # what one browser tab is asked to hold (160 MB as int16): a 255 x 512 x 512 CT fits
MAX_SIDE = 8192  # the longest image side drawn in the browser (a 4k x 4k radiograph is sent whole)
CHUNK_BYTES = 4 << 20  # about 4 MB of voxels per HTTP chunk (8 slices of a 512 x 512 CT)
AUTO = "Auto (1st–99th percentile)"
AUTO_CT = "Auto (5th–95th percentile of the body, above -500 HU)"
DICOM_DEFAULT = "DICOM default"
CT_DEFAULT = "Mediastinum / soft tissue"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """How a series is sent: grid, strides, value encoding and chunking (`describe` makes it)."""

    shape: tuple[int, int, int]  # sent (slices, rows, cols), after subsampling
    stride: tuple[int, int, int]  # every stride-th slice/row/col of the series
    dtype: str  # 'int16', 'float32' or 'uint8' (RGB, 3 per voxel)
    intercept: float  # value = stored * 1 + intercept
    chunk_slices: int
    meta: dict[str, Any] = field(repr=False)

    @property
    def n_chunks(self) -> int:
        return -(-self.shape[0] // self.chunk_slices)


def _strides(shape: tuple[int, ...], max_voxels: int) -> tuple[int, int, int]:
    """Every how-many-th slice, row and column is sent: in-plane as needed for MAX_SIDE, then at most
    once more (a 512 x 512 CT keeps 256 x 256), then slices, until the volume fits `max_voxels`."""
    n, rows, cols = shape[:3]
    s_in = 1
    while max(rows, cols) > MAX_SIDE * s_in:
        s_in *= 2
    side = -(-rows // s_in) * -(-cols // s_in)
    if n * side > max_voxels and min(rows, cols) // (2 * s_in) >= 256:
        s_in *= 2
        side = -(-rows // s_in) * -(-cols // s_in)
    fit = max(1, max_voxels // max(side, 1))  # slices that fit
    return max(1, -(-n // fit)), s_in, s_in


def _encoding(series: Series) -> tuple[str, float]:
    """(dtype, intercept): int16 for whole numbers that fit (after a shift for uint16 data), else float32."""
    if series.is_color:
        return "uint8", 0.0
    lo, hi = series.value_range
    px = series.pixels
    step = max(1, px.shape[0] // 64)  # cheap rejection on a sample before the full pass
    whole = all(np.array_equal(px[i], np.rint(px[i])) for i in range(0, px.shape[0], step))
    whole = whole and all(np.array_equal(px[i], np.rint(px[i])) for i in range(px.shape[0]))
    if whole and lo >= -32768 and hi <= 32767:
        return "int16", 0.0
    if whole and hi - lo <= 65535:
        return "int16", float(lo + 32768)
    return "float32", 0.0


def nifti_affine(series: Series, stride: tuple[int, int, int] = (1, 1, 1)) -> np.ndarray:
    """RAS mm of voxel (col, row, display slice) of the sent grid. Images that are not volumes are laid
    out as stored (rows down, columns right on screen), in mm when the pixel size is known."""
    n = series.n_slices
    if series.is_volume:
        a = np.array(series.affine, dtype=float)
        if display_order(series)[0] != 0:  # shown last slice first: display slice d is native n-1-d
            a[:3, 3] += (n - 1) * a[:3, 0]
            a[:3, 0] = -a[:3, 0]
    else:
        ds, dr, dc = series.spacing if pixel_spacing_known(series) else (1.0, 1.0, 1.0)
        # col -> screen right, row -> screen down in NiiVue's radiological axial view (+x RAS on the left)
        a = np.diag([-dc, -dr, ds, 1.0])
        return np.asarray(a @ np.diag([stride[2], stride[1], stride[0], 1.0]))
    a = a @ np.diag([stride[0], stride[1], stride[2], 1.0])
    return np.asarray(_LPS_TO_RAS @ a[:, [2, 1, 0, 3]])


_LAYOUT = {  # plane: (canonical axis stepped through, shown vertically, shown horizontally; labels L R T B)
    "axial": (0, 1, 2, ("R", "L", "A", "P")),
    "coronal": (1, 0, 2, ("R", "L", "S", "I")),
    "sagittal": (2, 0, 1, ("A", "P", "S", "I")),
}


def planes(series: Series, shape: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """How each plane is drawn, as `plane_view` draws it (radiological: patient right on the left,
    anterior or head up). For a plane: the NIfTI voxel axis it steps through ('axis': 0 = col,
    1 = row, 2 = display slice), the axes shown across ('h') and down ('v'), and for each whether
    the screen or slice order runs against the voxel index ('reverse'); orientation labels.
    A series that is not a volume has one plane, 'native': as stored, rows down, columns right."""
    dims = (shape[2], shape[1], shape[0])
    native = {"native": {"axis": 2, "reverse": False, "n": dims[2], "title": "Image", "letter": "",
                         "h": {"axis": 0, "reverse": False}, "v": {"axis": 1, "reverse": False}, "labels": None}}
    if not series.is_volume:
        return native
    lps = _LPS_TO_RAS @ nifti_affine(series)  # LPS mm of voxel (col, row, display slice)
    canon = canonical_axes(lps[:, [2, 1, 0, 3]])
    if canon is None:
        return native
    order, flips, _ = canon

    def axis(k: int) -> dict[str, Any]:
        nifti = 2 - int(order[k])  # native (slice, row, col) axis -> NIfTI (col, row, slice) axis
        return {"axis": nifti, "reverse": bool(flips[k])}

    out: dict[str, dict[str, Any]] = {}
    for plane, (k, kv, kh, labels) in _LAYOUT.items():
        a = axis(k)
        out[plane] = {**a, "n": dims[a["axis"]], "title": plane.capitalize(),
                      "letter": {"axial": "z", "coronal": "y", "sagittal": "x"}[plane],
                      "h": axis(kh), "v": axis(kv), "labels": dict(zip(("left", "right", "top", "bottom"), labels,
                                                                        strict=True))}
    return out


def presets(series: Series) -> list[dict[str, Any]]:
    """The Viewer's window presets: DICOM default (window or VOI LUT), Auto, and the CT presets."""
    out: list[dict[str, Any]] = []
    auto = series_auto_window(series) if not series.is_color else Window(127.5, 255)
    if series.window is not None or series.voi_lut is not None:
        w = series.window or auto
        out.append({"name": DICOM_DEFAULT, "center": w.center, "width": w.width,
                    "voi_lut": series.window is None and series.voi_lut is not None})
    out.append({"name": AUTO_CT if series.modality == "CT" else AUTO, "center": auto.center, "width": auto.width})
    if series.modality == "CT":
        out += [{"name": name, "center": w.center, "width": w.width} for name, w in CT_PRESETS.items()]
    return out


def default_preset(series: Series) -> str:
    """What the Viewer starts with: the DICOM window or LUT, Auto off CT, soft tissue on CT without one."""
    names = [p["name"] for p in presets(series)]
    dicom_or_not_ct = series.window is not None or series.voi_lut is not None or series.modality != "CT"
    return names[0] if dicom_or_not_ct else CT_DEFAULT


def voi_lut_greys(series: Series, n: int = 4096) -> dict[str, Any] | None:
    """The file's VOI LUT (used when it has no window) sampled at `n` inputs: {'low', 'high', 'greys'},
    greys 0..255 as pydicom's `apply_voi_lut` gives them (`medui.reading.display.apply_voi_lut`)."""
    from medui.reading.display import apply_voi_lut

    if series.is_color or series.voi_lut is None or series.window is not None:
        return None
    lut = series.voi_lut
    low, high = float(lut.first), float(lut.first + max(len(lut.table) - 1, 1))
    values = np.linspace(low, high, min(n, max(len(lut.table), 2)), dtype=np.float32)[None, :]
    return {"low": low, "high": high, "greys": apply_voi_lut(values, series)[0].tolist()}


def describe(series: Series, max_voxels: int = MAX_VOXELS) -> Volume:
    """What the browser needs besides the voxels (JSON-ready `meta`), computed once per series."""
    stride = _strides(series.pixels.shape, max_voxels)
    n, rows, cols = series.pixels.shape[:3]
    shape = (-(-n // stride[0]), -(-rows // stride[1]), -(-cols // stride[2]))
    dtype, intercept = _encoding(series)
    per_slice = shape[1] * shape[2] * (3 if dtype == "uint8" and series.is_color else 2 if dtype == "int16" else 4)
    chunk = int(np.clip(CHUNK_BYTES // max(per_slice, 1), 1, shape[0]))
    note = ""
    if stride != (1, 1, 1):
        note = (f"Shown subsampled in the browser ({'x'.join(map(str, shape[1:]))} of {rows}x{cols} pixels, "
                f"{shape[0]} of {n} slices): the full series is {n * rows * cols / 1e6:.0f} M voxels, more than a "
                f"browser tab is asked to hold ({max_voxels / 1e6:.0f} M, at most {MAX_SIDE} a side). "
                "Values and positions are read from the shown grid.")
    positions = slice_positions_mm(series) if series.has_geometry else None
    meta: dict[str, Any] = {
        "shape": list(shape), "original_shape": [n, rows, cols], "stride": list(stride),
        "rgb": series.is_color, "dtype": dtype, "intercept": intercept,
        "chunk_slices": chunk, "n_chunks": -(-shape[0] // chunk),
        "affine": np.round(nifti_affine(series, stride), 6).tolist(),
        "planes": (plane_map := planes(series, shape)),
        "native_plane": native_plane(series) if "native" not in plane_map else "native",
        "slice_axis": slice_axis(series), "positions_mm": None if positions is None else
        [round(p, 3) for p in positions[:: stride[0]]],
        "pixel_unit": "mm" if pixel_spacing_known(series) else "px",
        "unit": "HU" if series.modality == "CT" else "value", "modality": series.modality,
        "value_range": list(series.value_range), "presets": presets(series), "preset": default_preset(series),
        "invert": shows_inverted(series), "voi": voi_lut_greys(series), "voi_function": voi_function(series),
        "note": note,
    }
    return Volume(shape=shape, stride=stride, dtype=dtype, intercept=intercept, chunk_slices=chunk, meta=meta)


def chunk(series: Series, volume: Volume, k: int) -> bytes:
    """The voxels of chunk k (display slices k*chunk_slices ...), little-endian, C order (slice, row, col[, rgb])."""
    if not 0 <= k < volume.n_chunks:
        raise IndexError(f"chunk {k} does not exist: the volume has {volume.n_chunks} chunk(s)")
    ss, sr, sc = volume.stride
    order = display_order(series)[:: ss]
    rows = order[k * volume.chunk_slices:(k + 1) * volume.chunk_slices]
    block = series.pixels[rows][:, ::sr, ::sc]
    if volume.dtype == "uint8":
        return np.ascontiguousarray(np.clip(np.rint(block), 0, 255).astype(np.uint8)).tobytes()
    if volume.dtype == "int16":
        return np.ascontiguousarray((block - np.float32(volume.intercept)).astype("<i2")).tobytes()
    return np.ascontiguousarray(block.astype("<f4")).tobytes()
