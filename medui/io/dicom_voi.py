"""The display window and VOI LUT of a DICOM series, read from its first instance's header."""

from __future__ import annotations

from typing import Any

import numpy as np

from medui.series import VoiLut, Window


def window(ds: Any) -> Window | None:
    from medui.io.geometry import functional_value

    center = ds.get("WindowCenter", functional_value(ds, 0, "FrameVOILUTSequence", "WindowCenter"))
    width = ds.get("WindowWidth", functional_value(ds, 0, "FrameVOILUTSequence", "WindowWidth"))
    try:
        c, w = _first_float(center), _first_float(width)
    except (TypeError, ValueError, IndexError):
        return None
    return Window(c, w) if w > 0 else None


def _first_float(value: Any) -> float:
    if isinstance(value, (str, bytes, int, float)):
        return float(value)
    return float(value[0])


def _lut_table(item: Any, little_endian: bool) -> np.ndarray:
    """A LUT item's entries as uint16, whether LUT Data was stored as US values or OW bytes."""
    data = item.LUTData
    if isinstance(data, bytes):
        return np.frombuffer(data, dtype="<u2" if little_endian else ">u2").astype(np.uint16)
    return np.atleast_1d(np.asarray(data, dtype=np.uint16))


def voi_module(ds: Any) -> Any:
    """What the VOI stage needs from the first instance, as a small pydicom Dataset (or None).

    Holds VOILUTSequence (first item, LUT Data as US values), WindowCenter, WindowWidth,
    VOILUTFunction, BitsStored, PixelRepresentation and PhotometricInterpretation: the input
    of `pydicom.pixels.apply_voi_lut` / `apply_windowing` on pixels already in modality units.
    """
    from pydicom.dataset import Dataset

    from medui.io.geometry import functional_value

    seq = ds.get("VOILUTSequence")
    function = ds.get("VOILUTFunction", functional_value(ds, 0, "FrameVOILUTSequence", "VOILUTFunction"))
    if not seq and not function:
        return None
    module = Dataset()
    module.PhotometricInterpretation = "MONOCHROME2"  # inversion (MONOCHROME1) is the display's job
    module.BitsStored = int(ds.get("BitsStored", 16) or 16)
    module.PixelRepresentation = int(ds.get("PixelRepresentation", 0) or 0)
    if function:
        module.VOILUTFunction = str(function).strip().upper()
    if seq:
        try:
            item = seq[0]
            n, first, bits = (int(v) for v in item.LUTDescriptor)
            table = _lut_table(item, ds.original_encoding[1] is not False)[: (n or 65536)]
            lut = Dataset()
            lut.add_new(0x00283002, "SS" if first < 0 else "US", [len(table) % 65536, first, min(bits, 16)])
            lut.add_new(0x00283006, "US", table.tolist())
            lut.LUTExplanation = str(item.get("LUTExplanation", ""))
            module.VOILUTSequence = [lut]
        except Exception:  # malformed LUT: the linear window is used instead
            pass
    return module


def voi_lut(module: Any) -> VoiLut | None:
    """A typed summary of the VOI LUT in a module made by `voi_module`."""
    if module is None or "VOILUTSequence" not in module:
        return None
    item = module.VOILUTSequence[0]
    _, first, bits = (int(v) for v in item.LUTDescriptor)
    return VoiLut(float(first), np.asarray(item.LUTData, np.float32), bits, str(item.get("LUTExplanation", "")))
