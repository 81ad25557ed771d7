"""Diagnose widgets: model picker and card, score gauge, slice scores, saliency overlays."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medui.ai.card import ModelCard
from medui.ai.inference import Prediction
from medui.ai.overlay import COLORMAPS, overlay_rgb
from medui.ai.saliency import METHODS
from medui.reading.display import default_window, plane_view, png_bytes, render, shows_inverted
from medui.series import Series
from medui.usecases.diagnose import saliency_map


def card_summary(card: ModelCard) -> None:
    if card.demo:
        st.error("**Demonstration model trained on synthetic phantoms.** Its scores mean nothing on real images.",
                 icon="🧪")
    m = card.metrics
    cols = st.columns(4)
    cols[0].metric("Classes", " / ".join(card.class_names))
    cols[1].metric("Threshold", f"{card.threshold:.3f}", help=card.threshold_method)
    cols[2].metric("Held-out AUC", f"{m['auc']:.3f}" if isinstance(m.get("auc"), (int, float)) else "—",
                   help=f"95% CI {m.get('auc_ci')}; {m.get('split', '')}")
    cols[3].metric("Input", f"{card.input_size[0]}x{card.input_size[1]}x{card.channels}", help=card.architecture)
    with st.expander("Model card"):
        st.markdown(f"**Intended use.** {card.intended_use}\n\n**Limitations.** {card.limitations or '—'}\n\n"
                    f"**Trained on.** {card.training_data.get('source', '—')}  \n**Threshold.** {card.threshold_method}")
        st.json(card.to_json(), expanded=False)


def gauge(pred: Prediction, card: ModelCard) -> go.Figure:
    p = pred.probabilities[card.positive_class] if card.task == "binary" else max(pred.probabilities.values())
    above = card.task != "binary" or p >= card.threshold
    fig = go.Figure(go.Indicator(
        mode="gauge+number", value=round(100 * p, 1), number={"suffix": "%"},
        title={"text": f"P({card.positive_class})" if card.task == "binary" else pred.label},
        gauge={"axis": {"range": [0, 100]}, "bar": {"color": "#e4572e" if above else "#4ea8de"},
               "threshold": {"line": {"color": "white", "width": 4}, "value": 100 * card.threshold},
               "steps": [{"range": [0, 100 * card.threshold], "color": "#1f2d3d"},
                         {"range": [100 * card.threshold, 100], "color": "#3d1f1f"}]}))
    fig.update_layout(height=270, margin=dict(l=30, r=30, t=50, b=10), paper_bgcolor="rgba(0,0,0,0)")
    return fig


def slice_chart(pred: Prediction, card: ModelCard, current: int) -> go.Figure:
    scores = pred.slice_scores or []
    fig = go.Figure(go.Scatter(x=list(range(1, len(scores) + 1)), y=scores, mode="lines+markers",
                               marker=dict(size=5), name="score",
                               hovertemplate="slice %{x}: %{y:.3f}<extra></extra>"))
    fig.add_hline(y=card.threshold, line_dash="dash", annotation_text="threshold", line_color="white")
    fig.add_vline(x=current + 1, line_color="#e4572e")
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=30), yaxis=dict(range=[0, 1], title="score"),
                      xaxis=dict(title="slice"), paper_bgcolor="rgba(0,0,0,0)")
    return fig


def picked_slice(chart_key: str) -> int | None:
    """The slice number of a newly clicked point on the score chart (each click applied once)."""
    event = st.session_state.get(chart_key)
    points = getattr(getattr(event, "selection", None), "points", None) or (
        event.get("selection", {}).get("points") if isinstance(event, dict) else None)
    if not points:
        return None
    x = int(points[0].get("x", 0))
    seen_key = f"{chart_key}-applied"
    if st.session_state.get(seen_key) == x:
        return None
    st.session_state[seen_key] = x
    return x


def saliency_cached(key: tuple, series: Series, index: int, method: str, predictor, explainer) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Maps are computed once per (model, series, slice, method) and kept in this session."""
    store: dict = st.session_state.setdefault("medui.saliency", {})
    if key not in store:
        if len(store) > 64:
            store.pop(next(iter(store)))
        with st.spinner(f"Computing {METHODS[method]}…"):
            store[key] = saliency_map(series, index, method, predictor, explainer)
    return store[key]


def overlays(series: Series, index: int, model_id: str, series_id: str, predictor, explainer) -> None:  # type: ignore[no-untyped-def]
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    methods = c1.multiselect("Saliency methods (side by side)", list(METHODS), default=["gradcam"],
                             format_func=METHODS.get, key="cam-methods")
    opacity = c2.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="cam-opacity")
    cmap = c3.selectbox("Colour map", list(COLORMAPS), key="cam-cmap")
    level = c4.slider("Contour at", 0.0, 1.0, 0.5, 0.05, key="cam-contour", help="0 hides the contour")
    if not methods:
        return
    view = plane_view(series, "native", index)
    base = render(series, view, default_window(series), shows_inverted(series))
    cols = st.columns(len(methods))
    for col, method in zip(cols, methods):
        sal = saliency_cached((model_id, series_id, index, method), series, index, method, predictor, explainer)
        rgb = overlay_rgb(base, sal, opacity, cmap, level if level > 0 else None)
        with col:
            st.image(rgb, caption=f"{METHODS[method]} · slice {index + 1}", width="stretch")
            st.download_button("Download PNG", png_bytes(rgb, 3), file_name=f"overlay_{method}_slice{index + 1}.png",
                               mime="image/png", key=f"dl-{method}")
