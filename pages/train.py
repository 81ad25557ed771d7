"""Train page: check a labelled folder, start a fine-tuning job, watch it live, evaluate the new model."""

import streamlit as st

from medui.ui import modelcache
from medui.ui import train as ui
from medui.ui import auth
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders
auth.require("train")  # the user's roles must open this page (else: not allowed, stop)

st.title("Train")
st.caption("Fine-tune on your own labelled images. Runs as a background job: you can refresh or close the page.")

st.subheader("1. Data")
# before the data: an upload is staged (de-identified) with its patients already decided
pattern = st.text_input("Patient from file name (optional)", key="train.pattern", placeholder="<patient>_<n>.png",
                        help="Used when there is no DICOM PatientID and no per-patient folder.")
data = ui.data_source(pattern)
min_per_class = int(st.number_input("Minimum images per class", 2, 1000, 10, key="train.min"))
index = ui.dataset_report(data, pattern, min_per_class) if data else None

st.subheader("2. Model")
ui.start_form(modelcache.registry(), data, index, pattern, min_per_class)

st.subheader("3. Jobs")
ui.jobs_panel()
