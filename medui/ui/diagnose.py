"""Diagnose widgets: model picker and card, score gauge, slice scores, saliency overlays."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medui.ai.card import ModelCard
from medui.ai.inference import MARGIN_DECIMALS, Prediction
from medui.ai.overlay import COLORMAPS
from medui.ai.promotion import Status, auc_interval, held_out_auc
from medui.ai.promotion import default as default_model
from medui.ai.saliency import METHODS
from medui.errors import MedUIError
from medui.reading.display import slice_axis, slice_label
from medui.ui import auth, reader, resources, state
from medui.ui.markdown import md
from medui.ui.state import DIAGNOSES, SALIENCY, Loaded
from medui.usecases.diagnose import (
    FLAT_RANGE,
    Diagnosis,
    LoadedModel,
    Style,
    export_overlay,
    overlay,
    saliency,
    score,
)
from medui.usecases.models import model_warning

T = TypeVar("T")


def series_picker(items: list[Loaded]) -> Loaded:
    ids = [i.id for i in items]
    labels = {i.id: i.series.summary() for i in items}  # plain labels: the widget must not hold the series
    sid = st.selectbox("Series", ids, format_func=labels.__getitem__, key="dx.series")
    return items[ids.index(sid)] if sid in ids else items[0]


def model_picker(models: list[Status]) -> Status:
    """Any registered model; the default is the promoted one (`medui.ai.promotion.default`)."""
    mids = [m.entry.id for m in models]
    labels = {m.entry.id: f"{m.entry.id} · {m.label}" + (" · demo" if m.entry.card.demo and not m.demo_fallback
                                                          else "") for m in models}
    first = default_model(models)
    mid = st.selectbox("Model", mids, index=mids.index(first.entry.id) if first else 0, key="dx.model",
                       format_func=labels.__getitem__,
                       help="The promoted model of a task is the default; candidates are for evaluation.")
    return models[mids.index(mid)] if mid in mids else models[0]


def model_in_use(state: Status) -> None:
    """One line saying which model scores the scan: name, version, promoted or candidate, evaluated or not."""
    card = state.entry.card
    if state.demo_fallback:
        role = f"the demo model, promoted by default because no other model is promoted for *{md(state.task)}*"
    elif state.promoted:
        role = f"promoted for *{md(state.task)}*"
    else:
        role = f"**candidate** for *{md(state.task)}* (not promoted)"
    auc, ci = held_out_auc(card), auc_interval(card)
    if auc is None:
        evaluated = "**not evaluated** on held-out data"
    else:
        interval = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else " (no confidence interval)"
        evaluated = f"held-out AUC {auc:.3f}{interval}, n = {card.metrics.get('n', '?')}"
    st.markdown(f":material/model_training: **Model in use:** {md(card.name)} version {card.version} — {role} · "
                f"{evaluated}")


def model_banner(state: Status) -> None:
    """Above every result of a candidate or never-evaluated model: what it is and what not to do."""
    warning = model_warning(state)
    if warning:
        st.warning(f"**{md(warning)}** Its scores are for evaluation only, not for patient care. An ML engineer "
                   "can review and promote it on the Models page.", icon=":material/gpp_maybe:")


def verdict(pred: Prediction, card: ModelCard) -> None:
    """The label, its margin to the threshold and the class probabilities, in words that agree at
    the precision shown; a score in the indeterminate band says so instead of a confident label."""
    if pred.indeterminate:
        st.subheader(f"Indeterminate (leaning {pred.label})")
        band = (f"inside the indeterminate band {pred.band[0]:.3f}–{pred.band[1]:.3f} set on validation data"
                if pred.band else f"within {10 ** -MARGIN_DECIMALS:.3f} of it")
        st.warning(f"The score is too close to the operating threshold ({pred.threshold:.3f}) to call: {band}. "
                   "Treat this result as uncertain.", icon=":material/help:")
    else:
        st.subheader(pred.label)
    if card.task == "binary":
        score = pred.probabilities[card.positive_class]
        side = "at or above" if pred.margin >= 0 else "below"
        low = (f" The threshold was chosen on held-out data, so the label is '{card.positive_class}' whenever the "
               "score reaches it, even below 0.5." if pred.threshold < 0.5 else "")
        st.markdown(f"P({card.positive_class}) = **{_probability(score)}**, {side} the operating threshold "
                    f"{pred.threshold:.{MARGIN_DECIMALS}f} (margin {pred.margin:+.{MARGIN_DECIMALS}f}).{low}")
    else:
        st.markdown(f"Top class **{pred.label}**, ahead of the next by {pred.margin:.{MARGIN_DECIMALS}f}.")
    st.dataframe([{"class": c, "probability": _probability(v)} for c, v in pred.probabilities.items()],
                 hide_index=True)


def study_score_caption(dx: Diagnosis) -> None:
    """Which slice gave the study score, in the Viewer's numbering with its position."""
    if dx.slice_scores:
        st.caption(f"Study score = highest slice score ({slice_label(dx.series, dx.peak_slice)}).")


def _probability(v: float) -> str:
    """At the verdict's precision, so the table and the sentence above it never disagree."""
    tiny = 10 ** -MARGIN_DECIMALS
    if tiny <= v <= 1 - tiny:
        return f"{v:.{MARGIN_DECIMALS}f}"
    return f"<{tiny:.{MARGIN_DECIMALS}f}" if v < 0.5 else f">{1 - tiny:.{MARGIN_DECIMALS}f}"


def slice_picker(dx: Diagnosis, series_id: str) -> int:
    """Slice slider and the score-by-slice chart, both in display numbering; a click on a point moves
    the slider. The slider (one per series, whatever the model) is the one current slice: it stays
    where it is when the model changes, and the chart's marker is drawn from it."""
    scores = dx.slice_scores
    assert scores is not None
    slider_key, chart_key = f"dx.slice.{series_id}", f"dx.slices.{series_id}"
    if slider_key not in st.session_state:
        st.session_state[slider_key] = dx.peak_slice + 1
    index = int(st.slider("Slice", 1, len(scores), key=slider_key)) - 1
    st.caption(f"{slice_label(dx.series, index)} · score {scores[index]:.3f}")
    st.plotly_chart(slice_chart(dx, index), width="stretch", key=chart_key, selection_mode="points",
                    on_select=partial(_on_chart_click, chart_key, slider_key, len(scores)))
    return index


def _on_chart_click(chart_key: str, slider_key: str, n: int) -> None:
    """A click on the chart moves the slider (a callback: each click is applied once, before the run)."""
    picked = picked_slice(chart_key)
    if picked is not None and 1 <= picked <= n:
        st.session_state[slider_key] = picked


def card_summary(card: ModelCard) -> None:
    if card.demo:
        st.error("**Demonstration model trained on synthetic phantoms.** Its scores mean nothing on real images.",
                 icon=":material/science:")
    m = card.metrics
    cols = st.columns(4)
    cols[0].metric("Classes", " / ".join(card.class_names))
    cols[1].metric("Threshold", f"{card.threshold:.3f}", help=card.threshold_method)
    cols[2].metric("Held-out AUC", f"{m['auc']:.3f}" if isinstance(m.get("auc"), (int, float)) else "—",
                   help=f"95% CI {m.get('auc_ci')}; {m.get('split', '')}")
    cols[3].metric("Input", f"{card.input_size[0]}x{card.input_size[1]}x{card.channels}", help=card.architecture)
    with st.expander("Model card"):
        source = card.training_data.get("source", "—")
        st.markdown(f"**Intended use.** {md(card.intended_use)}\n\n**Limitations.** {md(card.limitations or '—')}"
                    f"\n\n**Trained on.** {md(str(source))}  \n**Threshold.** {md(card.threshold_method)}")
        st.json(card.to_json(), expanded=False)


def gauge(pred: Prediction, card: ModelCard) -> go.Figure:
    p = pred.probabilities[card.positive_class] if card.task == "binary" else max(pred.probabilities.values())
    above = card.task != "binary" or p >= card.threshold
    colour = "#f2b134" if pred.indeterminate else "#e4572e" if above else "#4ea8de"
    steps = [{"range": [0, 100 * card.threshold], "color": "#1f2d3d"},
             {"range": [100 * card.threshold, 100], "color": "#3d1f1f"}]
    if pred.band is not None:
        steps.append({"range": [100 * pred.band[0], 100 * pred.band[1]], "color": "#4a3f1f"})
    fig = go.Figure(go.Indicator(
        mode="gauge+number", value=round(100 * p, 1), number={"suffix": "%"},
        title={"text": f"P({card.positive_class})" if card.task == "binary" else pred.label},
        gauge={"axis": {"range": [0, 100]}, "bar": {"color": colour},
               "threshold": {"line": {"color": "white", "width": 4}, "value": 100 * card.threshold},
               "steps": steps}))
    fig.update_layout(height=270, margin=dict(l=30, r=30, t=50, b=10), paper_bgcolor="rgba(0,0,0,0)")
    return fig


def slice_chart(dx: Diagnosis, current: int) -> go.Figure:
    """Score by slice in display numbering, the position in mm on hover; the current slice marked."""
    scores = dx.slice_scores or []
    card = dx.model.entry.card
    numbers = list(range(1, len(scores) + 1))
    axis = slice_axis(dx.series)
    where = [slice_label(dx.series, d) for d in range(len(scores))]
    fig = go.Figure(go.Scatter(x=numbers, y=scores, mode="lines+markers", marker=dict(size=5), name="score",
                               customdata=where, hovertemplate="%{customdata}: %{y:.3f}<extra></extra>"))
    fig.add_hline(y=card.threshold, line_dash="dash", annotation_text="threshold", line_color="white")
    fig.add_vline(x=current + 1, line_color="#e4572e")
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=30), yaxis=dict(range=[0, 1], title="score"),
                      xaxis=dict(title=f"slice (Viewer numbering{'; ' + axis + ' in mm on hover' if axis else ''})"),
                      paper_bgcolor="rgba(0,0,0,0)")
    return fig


def picked_slice(chart_key: str) -> int | None:
    """The slice number (display numbering) of the point selected on the score chart, if any."""
    event = st.session_state.get(chart_key)
    points = getattr(getattr(event, "selection", None), "points", None) or (
        event.get("selection", {}).get("points") if isinstance(event, dict) else None)
    if not points:
        return None
    return int(points[0].get("x", 0))


def _memo(item_key: str, name: tuple[object, ...], nbytes: Callable[[T], int]) -> Callable[[Callable[[], T]], T]:
    """A computation on a series kept once per server beside the series (`SeriesStore.derived`):
    shared by every session, counted in the store's budget, dropped with the series' pixels."""
    def memo(run: Callable[[], T]) -> T:
        return resources.store().derived(item_key, name, lambda _series: run(), nbytes)
    return memo


def _dx_bytes(dx: Diagnosis) -> int:
    return int(dx.batch.nbytes)


def diagnosis(model: LoadedModel, item: Loaded) -> Diagnosis | None:
    """The series scored by the model: computed once per server and shared by every session that
    scores the same series with the same model (the store keeps it beside the series, in its
    budget); each session's first use is audited as its own. None (the reason shown) when this
    series cannot be scored."""
    seen: set[tuple[object, ...]] = st.session_state.setdefault(DIAGNOSES, set())
    name = ("score", model.entry.id)
    try:
        with st.spinner(f"Scoring {item.series.n_slices} slice(s)…"):
            if (name, item.key) in seen:  # audited already: the server's copy, or scored again if dropped
                return resources.store().derived(item.key, name, lambda s: score(s, model), _dx_bytes)
            dx = score(item.series, model, memo=_memo(item.key, name, _dx_bytes))
        seen.add((name, item.key))
        return dx
    except MedUIError as exc:
        st.error(f"{item.summary} could not be scored with {model.entry.id}: {exc}", icon=":material/error:")
    except Exception as exc:  # an unusual series must not take the session down
        st.error(f"{item.summary} could not be scored with {model.entry.id} "
                 f"({type(exc).__name__}: {exc}). Try another series or model.", icon=":material/error:")
    return None


def class_picker(dx: Diagnosis, key: str) -> int | None:
    """For a multi-class model, which class the overlays explain (the predicted one first)."""
    if dx.model.entry.card.task == "binary":
        return None
    names = dx.class_names
    return int(st.selectbox("Explain class", range(len(names)), index=dx.predicted_class, key=key,
                            format_func=lambda i: names[i] + (" (predicted)" if i == dx.predicted_class else ""),
                            help="Saliency shows what raised the score of this class."))


def _saliency_cached(dx: Diagnosis, series_id: str, index: int, method: str, class_index: int) -> np.ndarray:
    """Maps are computed once per (model, series, slice, method, class) per server, kept beside the
    series like its scores (`_memo`); each session's first view of a map is audited as its own."""
    item = state.find(series_id)
    name = ("saliency", dx.model.entry.id, index, method, class_index)
    seen: set[tuple[object, ...]] = st.session_state.setdefault(SALIENCY, set())
    with st.spinner(f"Computing {METHODS[method]}…"):
        if item is None:  # closed meanwhile: computed, not kept
            return saliency(dx, index, method, class_index)
        if (name, item.key) in seen:
            return resources.store().derived(item.key, name, lambda _s: saliency(dx, index, method, class_index),
                                             _map_bytes)
        out = saliency(dx, index, method, class_index, memo=_memo(item.key, name, _map_bytes))
    seen.add((name, item.key))
    return out


def _map_bytes(m: np.ndarray) -> int:
    return int(m.nbytes)


def reading_view(dx: Diagnosis, item: Loaded, index: int, class_index: int | None = None) -> None:
    """The series in the in-browser reader with one saliency map as an overlay (colour map, opacity
    and contour change in the browser); the reader, the slice slider and the score chart show the
    same slice: scrolling the reader moves the slider (debounced), the slider or a chart click moves
    the reader. Switching method sends one new overlay, never the image again."""
    if reader.classic_requested():
        return
    method = str(st.selectbox("Saliency on the image", list(METHODS), format_func=METHODS.__getitem__,
                              key="dx.overlay-method", help="Opacity, colour map and contour are set beside the "
                              "image and change in the browser."))
    cls = dx.predicted_class if class_index is None else class_index
    data = None
    try:
        sal = _saliency_cached(dx, item.id, index, method, cls)
    except Exception as exc:  # the image is still worth reading without its overlay
        st.error(f"{METHODS.get(method, method)} failed on {slice_label(dx.series, index)} "
                 f"({type(exc).__name__}: {exc})", icon=":material/error:")
    else:
        name = dx.class_names[cls]
        if sal.size == 0 or float(np.ptp(sal)) < FLAT_RANGE:
            st.info(f"{METHODS[method]}: the model's evidence for '{name}' is flat on this image (the map is empty or "
                    "constant): nothing to show. Try another method or class.", icon=":material/visibility_off:")
        else:
            data = reader.overlay_data(sal, index, key=f"{dx.model.entry.id}:{method}:{cls}:{index}",
                                       title=f"{METHODS[method]} · {name} · {slice_label(dx.series, index)}")
    slider_key = f"dx.slice.{item.id}"

    def follow(display_index: int) -> None:  # the reader scrolled: the slider (the one current slice) follows
        if dx.slice_scores and 0 <= int(display_index) < len(dx.slice_scores):
            st.session_state[slider_key] = int(display_index) + 1

    reader.reader(item.series, item.id, key=f"dx.reader.{item.id}", overlay=data, height=480, store_key=item.key,
                  goto={"slice": index, "nonce": index}, report_slice=bool(dx.slice_scores), on_slice=follow)


def overlays(dx: Diagnosis, index: int, series_id: str, class_index: int | None = None) -> None:
    """Side-by-side overlays of the chosen methods (PNGs to download); display settings never recompute a map."""
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    methods: list[str] = c1.multiselect("Saliency methods (side by side)", list(METHODS), default=["gradcam"],
                                        format_func=lambda m: METHODS[m], key="dx.methods")
    opacity = c2.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="dx.opacity")
    cmap = c3.selectbox("Colour map", list(COLORMAPS), key="dx.colormap")
    level = c4.slider("Contour at", 0.0, 1.0, 0.5, 0.05, key="dx.contour", help="0 hides the contour")
    if not methods:
        return
    cls = dx.predicted_class if class_index is None else class_index
    style = Style(opacity=float(opacity), colormap=str(cmap), contour=float(level) if level > 0 else None)
    cols = st.columns(len(methods))
    for col, method in zip(cols, methods, strict=True):
        try:
            sal = _saliency_cached(dx, series_id, index, method, cls)
            result = overlay(dx, index, method, style, cls, saliency_map=sal)
        except Exception as exc:  # one failing method must not hide the others
            col.error(f"{METHODS.get(method, method)} failed on {slice_label(dx.series, index)} "
                      f"({type(exc).__name__}: {exc})", icon=":material/error:")
            continue
        with col:
            if result.flat:
                st.info(f"{METHODS[method]}: the model's evidence for '{result.class_name}' is flat on this image "
                        "(the map is empty or constant): nothing to show. Try another method or class.",
                        icon=":material/visibility_off:")
            st.image(result.rgb, caption=f"{METHODS[method]} · {result.class_name} · {slice_label(dx.series, index)}",
                     width="stretch")
            st.download_button("Download PNG", partial(export_overlay, dx, result, actor=auth.actor()),  # audited
                               file_name=f"overlay_{method}_slice{index + 1}.png",
                               mime="image/png", key=f"dx.download.{method}", icon=":material/download:")
