"""Worklist page: score many studies in the background and triage them by AI score."""

import streamlit as st

from medui.ui import auth
from medui.ui import worklist as ui
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
who = auth.require("worklist")

st.title("Worklist")
st.caption("Score a folder of studies or a PACS query in the background, then read the likely-positive ones first. "
           "Decision support only — not a medical device. "
           "Also: `python -m medui batch` and `python -m medui worklist`.")
with st.expander("Score a batch", expanded=False):
    ui.start_panel(who)


def _jobs_and_list() -> None:
    with st.expander("Jobs", expanded=True):
        running = ui.jobs_panel(who)
    rows = ui.table(who, ui.filters())
    ui.export_and_rescore(rows, who)
    if not running and st.session_state.get("worklist.running"):
        st.session_state["worklist.running"] = False
        st.rerun()  # the last job ended: stop refreshing
    st.session_state["worklist.running"] = running


any_running = ui.any_running()
st.session_state["worklist.running"] = any_running
st.fragment(_jobs_and_list, run_every=ui.poll_interval() if any_running else None)()
