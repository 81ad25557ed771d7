"""MedUI entry point: `streamlit run app.py`."""

import streamlit as st

from medui import __version__
from medui.ui.shell import ensure_navigation
from medui.ui.state import device_label

ensure_navigation()

st.set_page_config(page_title="MedUI", page_icon="🩻", layout="wide")

pages = [
    st.Page("pages/viewer.py", title="Viewer", icon="🩻", default=True),
    st.Page("pages/diagnose.py", title="Diagnose", icon="🔎"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/models.py", title="Models", icon="🧠"),
]
nav = st.navigation(pages)

with st.sidebar:
    st.markdown(f"**MedUI** {__version__}")
    st.caption(f"Compute device — {device_label()}")
    st.warning("Decision support only — **not a medical device**. Not for primary diagnosis; "
               "every finding must be confirmed by a qualified clinician.", icon="⚠️")

nav.run()
