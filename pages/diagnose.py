"""Diagnose page: a model's calibrated score at its operating threshold, and why (saliency)."""

import streamlit as st

from medui.errors import MedUIError
from medui.ui import auth, diagnose, modelcache, pacs, reader, state, viewer
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("diagnose")  # the user's roles must open this page (else: not allowed, stop)

st.title("Diagnose")
st.caption("Decision support only — not a medical device. Scores must be interpreted by a qualified clinician.")
try:
    models = modelcache.statuses()
except MedUIError as exc:
    st.error(f"The model registry cannot be read: {exc}", icon=":material/error:")
    st.stop()
if not models:
    st.warning("No model is registered. Train the demo model with `python -m medui demo-model` or add one on the "
               "Models page.", icon=":material/warning:")
    st.stop()
if state.loaded():
    with st.expander("Add scans"):
        viewer.upload_panel()
else:  # nothing to score yet: the uploader is the page, not something to unfold
    st.subheader("Add scans")
    viewer.upload_panel()
    if state.loaded():  # a sample was just loaded: fold the uploader away, as the Viewer does
        st.rerun()
viewer.problems_panel()
items = state.loaded()
if not items:
    st.info("Upload a scan above, or load a sample. Series opened in the Viewer are available here too.",
            icon=":material/info:")
    st.stop()
left, right = st.columns(2)
with left:
    item = diagnose.series_picker(items)
with right:
    chosen = diagnose.model_picker(models)
entry = chosen.entry
diagnose.model_in_use(chosen)
try:
    model = modelcache.get(entry)
except MedUIError as exc:
    st.error(f"The model {entry.id} cannot be used: {exc}", icon=":material/error:")
    st.stop()
diagnose.card_summary(entry.card)
dx = diagnose.diagnosis(model, item)
if dx is None:
    st.stop()
pred = dx.prediction
diagnose.model_banner(chosen)  # above every result of a candidate or unevaluated model
for w in pred.warnings:
    st.warning(w, icon=":material/warning:")
g, p = st.columns([1, 1])
with g:
    st.plotly_chart(diagnose.gauge(pred, entry.card), width="stretch", key="dx.gauge")
with p:
    diagnose.verdict(pred, entry.card)
    diagnose.study_score_caption(dx)
index = 0  # display numbering (the Viewer's), as every slice index on this page
if dx.slice_scores:
    index = diagnose.slice_picker(dx, item.id)
class_index = diagnose.class_picker(dx, key=f"dx.class.{entry.id}.{item.id}")
diagnose.reading_view(dx, item, index, class_index)
with st.expander("Compare saliency methods side by side (PNG downloads)", icon=":material/compare:",
                 expanded=reader.classic_requested()):
    diagnose.overlays(dx, index, item.id, class_index)
pacs.results_panel(dx, index)
