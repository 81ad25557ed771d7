"""Audit page (administrators): who did what, when, filtered, exported as CSV."""

import streamlit as st

from medui.ui import audit as ui
from medui.ui import auth
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
who = auth.require("audit")

st.title("Audit trail")
st.caption("Sign-ins, series opened (by Study/Series Instance UID), scores, explanations, jobs, model registrations, "
           "promotions and deletions, settings changes and refusals. Also: `python -m medui audit --since 7d --json`.")
ui.table(ui.filters(), who)
