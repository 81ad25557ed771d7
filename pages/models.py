"""Models page: the registry, model cards and metrics; add (validated), download and delete models."""

import streamlit as st

from medui.ui import modelcache
from medui.ui import models as ui
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders

st.title("Models")
entries = modelcache.registry()
if entries:
    ui.registry_table(entries)
    ids = [e.id for e in entries]
    chosen = st.selectbox("Model card", ids, key="models.choice")
    ui.model_card(entries[ids.index(chosen)] if chosen in ids else entries[0])
else:
    st.info("No models yet. Train the demo model (`python -m medui demo-model`) or add one below.",
            icon=":material/info:")
ui.add_form()
