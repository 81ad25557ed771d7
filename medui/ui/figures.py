"""Plotly figures for slices. The picture travels as a PNG (`go.Image`, a few ms); an invisible
heatmap of the modality values on top gives the hover readout (value and patient position)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from medui.reading.display import PlaneView, data_uri, png_bytes

HOVER_MAX = 512  # the readout layer keeps at most this many rows/columns (sampled above it)


def _hover_values(image: np.ndarray, step: int) -> np.ndarray:
    sub = image[::step, ::step]
    if sub.ndim == 3:
        sub = sub.mean(axis=2)
    if np.all(np.mod(sub, 1) == 0) and sub.min() >= -32768 and sub.max() <= 32767:
        return sub.astype(np.int16)
    return sub.astype(np.float32)


def slice_figure(view: PlaneView, u8: np.ndarray, value_label: str = "value", hover: bool = True,
                 height: int = 640, title: str = "") -> go.Figure:
    """A zoomable slice at its physical aspect ratio, in patient millimetres."""
    rows, cols = u8.shape[:2]
    dx = float(view.col_spacing)
    dy = float(view.row_spacing)
    x0 = float(view.x[0])
    png = png_bytes(np.flipud(u8) if view.vertical_up else u8)
    y_first = float(view.y[-1]) if view.vertical_up else float(view.y[0])
    traces: list[dict[str, Any]] = [
        dict(type="image", source=data_uri(png), x0=x0, dx=dx, y0=y_first, dy=dy, hoverinfo="skip")]
    if hover:
        step = max(1, int(np.ceil(max(rows, cols) / HOVER_MAX)))
        hx, hy, hv = view.x[::step], view.y[::step], _hover_values(view.image, step)
        h, v, f = view.labels
        approx = "≈" if (view.approximate or step > 1) else ""
        u = view.unit
        where = f"{f}: {view.fixed:.1f} mm" if f != "frame" else f"{f} {int(view.fixed) + 1}/{view.n_slices}"
        fmt = ":.0f" if u == "px" else ":.1f"
        traces.append(dict(
            type="heatmap", z=hv, x=hx, y=hy, opacity=0, showscale=False, colorscale=[[0, "black"], [1, "black"]],
            hovertemplate=(f"{value_label} {approx}%{{z}}<br>{h}: %{{x{fmt}}} {u}<br>{v}: %{{y{fmt}}} {u}"
                           f"<br>{where}<extra></extra>"),
        ))
    layout = dict(
        height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0), dragmode="pan",
        title=dict(text=title, font=dict(size=13)) if title else None,
        plot_bgcolor="black", paper_bgcolor="rgba(0,0,0,0)", uirevision="slice",
        xaxis=dict(visible=False, constrain="domain", range=[x0 - dx / 2, x0 + dx * (cols - 0.5)]),
        yaxis=dict(visible=False, scaleanchor="x", scaleratio=1, constrain="domain",
                   autorange=True if view.vertical_up else "reversed"),
    )
    # Built from plain dicts without validation: the validators cost ~13 ms per slice.
    return go.Figure(data=traces, layout=layout, _validate=False)
