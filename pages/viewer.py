"""Viewer page: upload scans and look at them with correct values, windows and geometry."""

import streamlit as st

from medui.ui import state, viewer
from medui.ui import auth
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("viewer")  # the user's roles must open this page (else: not allowed, stop)

st.title("Viewer")
viewer.upload_panel()
viewer.problems_panel()
items = state.loaded()
if not items:
    st.info("Upload DICOM files, a folder, a zip, NIfTI or PNG/JPEG — or load a sample from the 'Try a sample' tab.",
            icon=":material/info:")
    st.stop()
left, right = st.columns([6, 1])
with right:
    if st.button("Clear all", key="viewer.clear-all", help="Forget every series loaded in this session",
                 icon=":material/delete:"):
        state.clear()
        st.rerun()
with left:
    item = viewer.series_picker(items)
viewer.slice_viewer(item.id)
viewer.header_panel(item)
