"""The app shell (`run_app`, called by app.py) and the one workaround for Streamlit's legacy
'pages folder' mode (`ensure_navigation`).

Why a workaround. The product's layout keeps the page scripts in a top-level `pages/` folder beside
app.py. Streamlit (1.67) treats such a folder as its legacy multipage app ("MPA v1"):

- `streamlit/runtime/pages_manager.py`: the first `PagesManager` of a server sets the class
  attribute `PagesManager.uses_pages_directory` to "a `pages/` folder exists beside the main script";
- `streamlit/runtime/scriptrunner/script_runner.py`: while that flag is true, a script run does not
  execute the main script but `_mpa_v1()`, which builds a navigation from the files in `pages/` and
  runs the requested one; a deep link such as /train then runs pages/train.py alone, without
  app.py's navigation, sidebar and notice;
- `streamlit/commands/navigation.py`: `st.navigation()` sets the flag to False, but only once the
  main script runs, i.e. after the first (legacy) run.

No supported switch exists: there is no config option or API to keep a `pages/` folder and use
`st.navigation` without the legacy mode (searched the docs and the issue tracker; see
streamlit/streamlit PR #10276, which added the flag as "a relic of v1" and whose review notes the
odd behaviour of a `pages` folder with `st.navigation` on direct URLs, and PR #16658, whose
best-practice guide says to use `st.navigation` with an `app_pages/` folder and to avoid the legacy
`pages/` auto-discovery). Streamlit's own advice is to rename the folder; the product keeps
`pages/`, so `ensure_navigation` sets the flag as `st.navigation` would, before anything renders,
and reruns. tests/test_pages.py fails with instructions if a Streamlit upgrade changes any of the
three places above.
"""

from __future__ import annotations

import streamlit as st

LEGACY_FLAG = "uses_pages_directory"  # streamlit.runtime.pages_manager.PagesManager class attribute


def in_legacy_pages_mode() -> bool:
    """Whether this server still runs Streamlit's legacy 'pages folder' mode."""
    from streamlit.runtime.pages_manager import PagesManager

    return bool(getattr(PagesManager, LEGACY_FLAG, False))


def ensure_navigation() -> None:
    """Leave the legacy mode (what `st.navigation` does, one run early) and rerun, so app.py's
    navigation, sidebar and notice always run. Every page (and app.py) calls it first."""
    from streamlit.runtime.pages_manager import PagesManager

    if in_legacy_pages_mode():
        setattr(PagesManager, LEGACY_FLAG, False)
        st.rerun()


def run_app() -> None:
    """The app: navigation over pages/, the sidebar (device, version, notice), the current page."""
    from medui import __version__
    from medui.ui.state import device_label

    ensure_navigation()
    st.set_page_config(page_title="MedUI", page_icon=":material/radiology:", layout="wide")
    pages = [
        st.Page("pages/viewer.py", title="Viewer", icon=":material/radiology:", default=True),
        st.Page("pages/diagnose.py", title="Diagnose", icon=":material/image_search:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/models.py", title="Models", icon=":material/neurology:"),
        st.Page("pages/pacs.py", title="PACS", icon=":material/lan:"),
    ]
    nav = st.navigation(pages)
    with st.sidebar:
        st.markdown(f"**MedUI** {__version__}")
        st.caption(f"Compute device — {device_label()}")
        st.warning("Decision support only — **not a medical device**. Not for primary diagnosis; "
                   "every finding must be confirmed by a qualified clinician.", icon=":material/warning:")
    nav.run()
