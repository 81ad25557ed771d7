"""The reading component (Streamlit Components v2, no iframe): a series read in the browser.

Python publishes the series (`medui.ui.volumes`) and mounts the component with a small JSON `data`:
where the bundle and the voxels are (HTTP routes of `medui.ui.server`), shape, affine, planes,
presets, an optional overlay, and what to report back. Scrolling, windowing, zoom, readout,
measurement and overlay styling then happen in the browser; the component sets two state values
only, debounced: `slice` (display index in the native plane, when asked) and `window` (preset,
center, width, invert, layout). The JavaScript is `frontend/` built into `static/reader.js`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from medui.series import Series
from medui.ui import server, volumes

# A few lines inline; the bundle itself comes over HTTP once and stays in the browser's cache.
LOADER = """
export default async function (component) {
  const url = new URL(component.data.bundle, window.location.href).href
  const mod = await import(url)
  return mod.mount(component)
}
"""
_COMPONENT = st.components.v2.component("medui_reader", js=LOADER)
CLASSIC = "classic"  # MEDUI_VIEWER=classic or ?viewer=classic: today's server-rendered (Plotly) viewer


def classic_requested() -> bool:
    """Whether this session asked for the server-rendered viewer (benchmarks, or no capable browser)."""
    return os.environ.get("MEDUI_VIEWER", "") == CLASSIC or st.query_params.get("viewer") == CLASSIC


def _reported(widget_key: str, name: str) -> Any:
    state = st.session_state.get(widget_key)
    value = getattr(state, name, None)
    if value is None and isinstance(state, dict):
        value = state.get(name)
    return value


def _remember(store_key: str, widget_key: str, name: str, then: Callable[[Any], None] | None = None) -> None:
    """Copy a value the browser reported into session state the page keeps (widget state is
    dropped once the component is not drawn, e.g. on another page); `then` gets it too."""
    value = _reported(widget_key, name)
    if value is not None:
        st.session_state[store_key] = value
        if then is not None:
            then(value)


def window_key(item_id: str) -> str:
    return f"reader.window.{item_id}"


def slice_key(item_id: str) -> str:
    return f"reader.slice.{item_id}"


def failed_key(item_id: str) -> str:
    return f"reader.failed.{item_id}"


def reader(series: Series, item_id: str, *, key: str, overlay: dict[str, Any] | None = None,
           goto: dict[str, int] | None = None, report_slice: bool = False, height: int = 620,
           on_slice: Callable[[int], None] | None = None, store_key: str | None = None) -> None:
    """Mount the reader for a series. The window chosen is remembered per series for this session
    (`window_key`); with `report_slice` the slice the user is on (display index in the native plane)
    is kept under `slice_key` and handed to `on_slice` (a callback: before the rerun); `goto` moves
    the reader to {'slice'} when it differs from what the reader last reported. A browser that
    cannot hold the series reports why under `failed_key`."""
    token = volumes.publish(series, store_key)
    meta = volumes.lookup(token)
    if meta is None:
        return
    data = {
        "bundle": server.bundle_url(),
        "volume": {**meta[1].meta, "url": server.volume_url(token)},
        "initial": st.session_state.get(window_key(item_id)),
        "overlay": overlay,
        "goto": goto,
        "report": {"slice": report_slice, "window": True},
        "height": height,
    }
    _COMPONENT(key=key, data=data, height="content",
               on_slice_change=lambda: _remember(slice_key(item_id), key, "slice", on_slice),
               on_window_change=lambda: _remember(window_key(item_id), key, "window"),
               on_failed_change=lambda: _remember(failed_key(item_id), key, "failed"))


def colormap_tables(names: list[str]) -> dict[str, list[list[int]]]:
    """256 RGB triples for each OpenCV colour map the overlays use (`medui.ai.overlay.COLORMAPS`)."""
    import cv2

    from medui.ai.overlay import COLORMAPS

    ramp = np.arange(256, dtype=np.uint8)[:, None]
    out: dict[str, list[list[int]]] = {}
    for name in names:
        bgr = cv2.applyColorMap(ramp, COLORMAPS[name])[:, 0, :]
        out[name] = bgr[:, ::-1].astype(int).tolist()
    return out


def overlay_data(saliency: np.ndarray, slice_index: int, key: str, title: str, *, colormap: str = "jet",
                 opacity: float = 0.45, contour: float = 0.5, floor: float = 0.2) -> dict[str, Any]:
    """A saliency map in [0, 1] on the native grid of one slice as the component's overlay (uint8, base64)."""
    from medui.ai.overlay import COLORMAPS

    u8 = np.rint(np.clip(np.nan_to_num(saliency.astype(np.float32)), 0, 1) * 255).astype(np.uint8)
    rows, cols = u8.shape[:2]
    return {"key": key, "slice": int(slice_index), "rows": rows, "cols": cols, "title": title,
            "map": base64.b64encode(np.ascontiguousarray(u8).tobytes()).decode("ascii"),
            "colormaps": colormap_tables(list(COLORMAPS)), "colormap": colormap, "opacity": float(opacity),
            "contour": float(contour), "floor": float(floor)}
