"""PACS page: the configured PACS nodes and a connection test for each (C-ECHO, QIDO-RS)."""

import streamlit as st

from medui.ui import auth, pacs
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("pacs")  # the user's roles must open this page (else: not allowed, stop)

st.title("PACS")
pacs.settings_panel()
st.caption("Open studies from a PACS in the Viewer ('From PACS'); send AI results back from the Diagnose page.")
