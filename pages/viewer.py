"""Viewer page: upload scans and read them with correct values, windows and geometry; the image first."""

import streamlit as st

from medui.ui import state, viewer
from medui.ui import auth
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("viewer")  # the user's roles must open this page (else: not allowed, stop)

st.title("Viewer")
items = state.loaded()
if not items:
    viewer.upload_panel()
    if state.loaded():  # a sample was loaded: show the reading layout
        st.rerun()
    viewer.problems_panel()
    if not items:
        st.info("Upload DICOM files, a folder, a zip, NIfTI or PNG/JPEG — or load a sample from the 'Try a sample' "
                "tab.", icon=":material/info:")
        st.stop()
left, right = st.columns([8, 1], vertical_alignment="bottom")
with left:
    item = viewer.series_picker(items)
with right:
    if st.button("Clear all", key="viewer.clear-all", help="Forget every series loaded in this session",
                 icon=":material/delete:"):
        state.clear()
        st.rerun()
viewer.reading_view(item.id)
viewer.problems_panel()
with st.expander("Add scans", icon=":material/upload:"):
    viewer.upload_panel()
viewer.header_panel(item)
