"""Train page: check a labelled folder, start a fine-tuning job, watch it live, evaluate the new model."""

from pathlib import Path

import streamlit as st

from medui.training import jobs
from medui.ai.architectures import ARCHITECTURES
from medui.training.fit import TrainConfig
from medui.ui import modelcache
from medui.ui import train as ui
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders

st.title("Train")
st.caption("Fine-tune on your own labelled images. Runs as a background job: you can refresh or close the page.")

st.subheader("1. Data")
tab_folder, tab_zip, tab_path = st.tabs(["Folder", "Zip", "Folder on the server"])
with tab_folder:
    up = st.file_uploader("A folder with one sub-folder per class (optionally inside train/, val/, test/)",
                          accept_multiple_files="directory", key="train-folder")
with tab_zip:
    zipped = st.file_uploader("A zip of such a folder", type=["zip"], key="train-zip")
with tab_path:
    server = st.text_input("Path on the server", key="train-path", placeholder="/data/chest-xray")
data: Path | None = None
if up:
    data = ui.save_upload(up)
elif zipped is not None:
    data = ui.save_upload([zipped])
elif server:
    data, problem = ui.server_folder(server)
    if problem:
        st.error(problem)
pattern = st.text_input("Patient from file name (optional)", key="train-pattern", placeholder="<patient>_<n>.png",
                        help="Used when there is no DICOM PatientID and no per-patient folder.")
min_per_class = st.number_input("Minimum images per class", 2, 1000, 10, key="train-min")
report = ui.dataset_report(data, pattern, int(min_per_class)) if data else None

st.subheader("2. Model")
entries = modelcache.registry()
choices = ["Recommended (DenseNet121 on a GPU, MobileNetV2 on a CPU)"] + [f"Fine-tune {e.id}" for e in entries] + \
    [f"Architecture {a}" for a in ARCHITECTURES]
with st.form("train-form"):
    start_from = st.selectbox("Start from", choices)
    c1, c2, c3, c4 = st.columns(4)
    epochs = c1.number_input("Epochs", 1, 500, 12)
    batch = c2.number_input("Batch size", 1, 512, 32)
    lr = c3.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f")
    sens = c4.number_input("Target sensitivity (0 = Youden's J)", 0.0, 1.0, 0.0, 0.01)
    name = st.text_input("New model name", "my-chest-model")
    hflip = st.checkbox("Allow horizontal flips", value=False,
                        help="Off by default: on a chest X-ray a flip moves the heart to the wrong side.")
    go_ = st.form_submit_button("Start training", type="primary", disabled=report is None)
if go_ and report is not None and data is not None:
    cfg = TrainConfig(data=[str(data)], out=name.strip(), epochs=int(epochs), batch_size=int(batch),
                      learning_rate=float(lr), min_sensitivity=float(sens) or None, patient_pattern=pattern or None,
                      min_per_class=int(min_per_class))
    if start_from.startswith("Fine-tune "):
        cfg.base = start_from.removeprefix("Fine-tune ")
    elif start_from.startswith("Architecture "):
        cfg.arch = start_from.removeprefix("Architecture ")
    cfg.augment["hflip"] = 1.0 if hflip else 0.0
    job = jobs.start(cfg.to_json())
    st.session_state["train-job"] = job.id
    st.toast(f"Started job {job.id}")

st.subheader("3. Jobs")
all_jobs = jobs.list_jobs()
if not all_jobs:
    st.info("No training jobs yet.")
    st.stop()
ids = [j.id for j in all_jobs]
current = st.session_state.get("train-job", ids[0])
chosen = st.selectbox("Job", ids, index=ids.index(current) if current in ids else 0, key="train-job-choice",
                      format_func=lambda i: f"{i} · {all_jobs[ids.index(i)].params().get('out')}")
job = all_jobs[ids.index(chosen)]


@st.fragment(run_every=2)
def live() -> None:
    """Polls the job folder every 2 s while the job is active; a final full rerun shows the result."""
    if ui.progress(job) in jobs.TERMINAL:
        st.rerun()


if job.status().get("state") in jobs.TERMINAL:
    ui.progress(job)
    if job.result():
        ui.evaluation(job.result())
else:
    live()
