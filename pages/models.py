"""Models page: the registry with each model's status, model cards and metrics, compare and promote a
candidate; add (validated, as a candidate), download and delete models."""

import streamlit as st

from medui.errors import MedUIError
from medui.ui import modelcache
from medui.ui import models as ui
from medui.ui import auth
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("models")  # the user's roles must open this page (else: not allowed, stop)

st.title("Models")
ui.flash()
try:
    models = modelcache.statuses()
except MedUIError as exc:
    st.error(f"The model registry cannot be read: {exc}", icon=":material/error:")
    models = []
if models:
    ui.registry_table(models)
    ids = [s.entry.id for s in models]
    labels = {s.entry.id: f"{s.entry.id} · {s.label}" for s in models}
    chosen = st.selectbox("Model card", ids, key="models.choice", format_func=labels.__getitem__)
    ui.model_card(models[ids.index(chosen)] if chosen in ids else models[0])
else:
    st.info("No models yet. Train the demo model (`python -m medui demo-model`) or add one below.",
            icon=":material/info:")
ui.add_form()
