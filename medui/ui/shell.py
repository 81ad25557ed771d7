"""The app shell (`run_app`, called by app.py) and a guard against Streamlit's legacy multipage mode.

A fresh Streamlit server whose main script has a `pages/` folder beside it runs its *first* script
run in the legacy 'pages folder' mode: a deep link such as /train then runs pages/train.py alone,
without app.py's navigation, sidebar and notice. Every page (and app.py) calls `ensure_navigation()`
first: in that mode it switches the server to `st.navigation` and reruns, so app.py always runs.
"""

from __future__ import annotations

import streamlit as st


def ensure_navigation() -> None:
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def run_app() -> None:
    """The app: navigation over pages/, the sidebar (device, version, notice), the current page."""
    from medui import __version__
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
