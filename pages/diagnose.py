"""Diagnose page: a model's calibrated score at its operating threshold, and why (saliency)."""

import streamlit as st

from medui.errors import MedUIError
from medui.ui import diagnose, modelcache, state, viewer
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders

st.title("Diagnose")
st.caption("Decision support only — not a medical device. Scores must be interpreted by a qualified clinician.")
entries = modelcache.registry()
if not entries:
    st.warning("No model is registered. Train the demo model with `python -m medui demo-model` or add one on the "
               "Models page.")
    st.stop()
if state.loaded():
    with st.expander("Add scans"):
        viewer.upload_panel()
else:  # nothing to score yet: the uploader is the page, not something to unfold
    st.subheader("Add scans")
    viewer.upload_panel()
viewer.problems_panel()
items = state.loaded()
if not items:
    st.info("Upload a scan above, or load a sample. Series opened in the Viewer are available here too.")
    st.stop()
left, right = st.columns(2)
with left:
    ids = [i.id for i in items]
    labels = {i.id: i.series.summary() for i in items}  # plain labels: the widget must not hold the series
    sid = st.selectbox("Series", ids, format_func=labels.__getitem__, key="dx-series")
    item = items[ids.index(sid)] if sid in ids else items[0]
with right:
    mids = [e.id for e in entries]
    mid = st.selectbox("Model (newest first)", mids, key="dx-model",
                       format_func=lambda m: m + ("  · demo" if entries[mids.index(m)].card.demo else ""))
    entry = entries[mids.index(mid)]
try:
    _, predictor, explainer = modelcache.get(entry)
except MedUIError as exc:
    st.error(f"The model {entry.id} cannot be used: {exc}")
    st.stop()
diagnose.card_summary(entry.card)
key = (entry.id, item.id)
results = st.session_state.setdefault("medui.predictions", {})
if key not in results:
    with st.spinner(f"Scoring {item.series.n_slices} slice(s)…"):
        results[key] = predictor.predict(item.series)
pred = results[key]
for w in pred.warnings:
    st.warning(w, icon="⚠️")
g, p = st.columns([1, 1])
with g:
    st.plotly_chart(diagnose.gauge(pred, entry.card), width="stretch", key="dx-gauge")
with p:
    verdict = "above" if pred.margin >= 0 else "below"
    st.subheader(f"{pred.label}")
    st.markdown(f"Score is **{verdict}** the operating threshold ({pred.threshold:.3f}) by {abs(pred.margin):.3f}.")
    st.dataframe([{"class": c, "probability": f"{v:.4f}" if 1e-4 <= v <= 1 - 1e-4 else ("<0.0001" if v < 0.5 else ">0.9999")}
                  for c, v in pred.probabilities.items()], hide_index=True)
    if pred.slice_scores:
        st.caption(f"Study score = highest slice score (slice {pred.peak_slice + 1} of {len(pred.slice_scores)}).")
index = 0
if pred.slice_scores:
    slider_key, chart_key = f"dx-slice-{item.id}", f"dx-slices-{item.id}"
    picked = diagnose.picked_slice(chart_key)  # a point clicked on the score-by-slice chart
    if picked is not None:
        st.session_state[slider_key] = picked
    index = st.slider("Slice", 1, len(pred.slice_scores), pred.peak_slice + 1, key=slider_key) - 1
    st.plotly_chart(diagnose.slice_chart(pred, entry.card, index), width="stretch", key=chart_key,
                    on_select="rerun", selection_mode="points")
diagnose.overlays(item.series, index, entry.id, item.id, predictor, explainer)
