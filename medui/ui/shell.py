"""Guard against Streamlit's legacy multipage mode.

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
