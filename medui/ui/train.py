"""Train page widgets: dataset upload and check, job parameters, live progress, evaluation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medui.ai.architectures import ARCHITECTURES
from medui.ai.registry import Entry
from medui.errors import DatasetError, MedUIError, ServerFolderError
from medui.training import jobs
from medui.training.data import DatasetIndex
from medui.training.plan import ModelPlan
from medui.ui import auth
from medui.ui.markdown import md
from medui.usecases.train import (
    ROOTS_VARIABLE,
    StartFrom,
    TrainRequest,
    allowed_folder,
    cancel,
    check_dataset,
    data_roots,
    plans,
    stage_upload,
    start,
)

RECOMMENDED = "Recommended"  # DenseNet121 on a GPU, MobileNetV2 on a CPU, when ImageNet weights can be had
CURRENT_JOB = "train.job"  # the job this session started or chose last (kept while the page is left)
START_FROM = "train.start-from"  # the 'Start from' box
START_KEPT = "train.start-from.kept"  # its (kind, model or architecture): kept when a new model changes the list
JOB_CHOICE = "train.job-choice"  # the jobs box (a widget: Streamlit forgets it when the page is left)


def server_folder(text: str) -> tuple[Path | None, str | None]:
    """(folder, None) when users may train from `text` on this server, else (None, why not)."""
    try:
        return allowed_folder(text), None
    except ServerFolderError as exc:
        return None, str(exc)


def server_folder_note() -> None:
    """What the 'Folder on the server' tab allows on this server (closed unless configured)."""
    roots = data_roots()
    if not roots:
        st.info(f"Folders on the server are turned off on this server. The administrator can allow some by setting "
                f"`{ROOTS_VARIABLE}` (':'-separated); until then, upload the folder or a zip.",
                icon=":material/lock:")
    else:
        st.caption("Allowed: folders inside " + ", ".join(f"`{r}`" for r in roots))


DEIDENTIFIED = ("Uploads are stored de-identified: file and folder names replaced, DICOM identifying attributes "
                "and image text metadata removed (patients kept apart by pseudonyms). Text burned into the pixels "
                "(a name or date written on the image) is not removed: check or crop such images first.")


def data_source(pattern: str = "") -> Path | None:
    """The dataset folder: an uploaded folder, an uploaded zip (both staged de-identified, patients
    decided with `pattern` where needed), or a folder on the server (read where it is)."""
    tab_folder, tab_zip, tab_path = st.tabs(["Folder", "Zip", "Folder on the server"])
    with tab_folder:
        up = st.file_uploader("A folder with one sub-folder per class (optionally inside train/, val/, test/)",
                              accept_multiple_files="directory", key="train.folder")
        st.caption(DEIDENTIFIED)
    with tab_zip:
        zipped = st.file_uploader("A zip of such a folder", type=["zip"], key="train.zip")
        st.caption(DEIDENTIFIED)
    with tab_path:
        server_folder_note()
        server = st.text_input("Path on the server", key="train.path", placeholder="/data/chest-xray")
    if up:
        return _staged(list(up), pattern)
    if zipped is not None:
        return _staged([zipped], pattern)
    if server:
        path, problem = server_folder(server)
        if problem:
            st.error(problem, icon=":material/error:")
        return path
    return None


def _staged(files: list[Any], pattern: str) -> Path | None:
    """Stage an upload for training (de-identified; another pattern stages it again); None (with the
    reason shown) when it cannot be written."""
    try:
        with st.spinner(f"Saving {len(files)} file(s) de-identified…"):
            return stage_upload(files, pattern or None)
    except DatasetError as exc:
        st.error(f"The upload could not be used: {exc}", icon=":material/error:")
        _unreadable(exc.unreadable, expanded=True)
        return None
    except (MedUIError, OSError) as exc:
        st.error(f"The upload could not be saved: {exc}", icon=":material/error:")
        return None


@st.cache_data(ttl=300, show_spinner=False)
def _plans(keras_home: str | None) -> dict[str | None, ModelPlan]:
    """`plans()` for a few minutes (it may try one connection); per Keras cache folder."""
    return plans()


def _start_choices(entries: list[Entry]) -> dict[str, tuple[StartFrom, str | None]]:
    """Label -> (start from, model or architecture). Each label says what will be trained on this
    machine and from which weights, e.g. 'Recommended → MobileNetV2 from ImageNet weights (cached)'."""
    what = _plans(os.environ.get("KERAS_HOME"))
    choices: dict[str, tuple[StartFrom, str | None]] = {f"{RECOMMENDED} → {what[None].text()}": ("recommended", None)}
    choices.update({f"Fine-tune {e.id}": ("fine-tune", e.id) for e in entries})
    choices.update({f"Architecture {a} → {what[a].text()}": ("architecture", a) for a in ARCHITECTURES})
    return choices


def start_form(entries: list[Entry], data: Path | None, index: DatasetIndex | None, pattern: str,
               min_per_class: int) -> None:
    """The model and training parameters; 'Start training' starts a background job on the checked data."""
    ready = index is not None
    choices = _start_choices(entries)
    kept = st.session_state.get(START_KEPT)
    labels = {v: k for k, v in choices.items()}
    if kept in labels and st.session_state.get(START_FROM) not in choices:
        # the widget was forgotten (the page was left) or its label changed: bring the last choice back
        st.session_state[START_FROM] = labels[kept]
    with st.form("train.form"):
        start_from = st.selectbox("Start from", list(choices), key=START_FROM)
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs", 1, 500, 12, key="train.epochs")
        batch = c2.number_input("Batch size", 1, 512, 32, key="train.batch-size")
        lr = c3.number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.5f", key="train.learning-rate")
        sens = c4.number_input("Target sensitivity (0 = Youden's J)", 0.0, 1.0, 0.0, 0.01, key="train.sensitivity")
        name = st.text_input("New model name", "my-chest-model", key="train.name")
        hflip = st.checkbox("Allow horizontal flips", value=False, key="train.hflip",
                            help="Off by default: on a chest X-ray a flip moves the heart to the wrong side.")
        go_ = st.form_submit_button("Start training", type="primary", disabled=not ready)
    st.session_state[START_KEPT] = choices.get(str(start_from), ("recommended", None))
    if not (go_ and ready and data is not None):
        return
    kind, what = choices.get(str(start_from), ("recommended", None))
    request = TrainRequest(data=data, name=name, start_from=kind, base=what if kind == "fine-tune" else None,
                           arch=what if kind == "architecture" else None, epochs=int(epochs), batch_size=int(batch),
                           learning_rate=float(lr), target_sensitivity=float(sens) or None, hflip=bool(hflip),
                           patient_pattern=pattern or None, min_per_class=min_per_class)
    try:
        job = start(request, index, actor=auth.actor())
    except MedUIError as exc:
        st.error(f"Training did not start: {exc}", icon=":material/error:")
        return
    st.session_state[CURRENT_JOB] = job.id
    st.toast(f"Started job {job.id}", icon=":material/play_arrow:")


def jobs_panel() -> None:
    """The jobs, newest first; the chosen one's progress (live while it runs) and evaluation."""
    all_jobs = jobs.list_jobs()
    if not all_jobs:
        st.info("No training jobs yet.", icon=":material/info:")
        return
    ids = [j.id for j in all_jobs]
    outs = {j.id: str(j.params().get("out")) + (f" · {by}" if (by := started_by(j)) != "—" else "") + f" · {j.backend}"
            for j in all_jobs}
    current = st.session_state.get(CURRENT_JOB)
    # the job just started, else the one chosen last, else the newest; set before the widget exists
    st.session_state[JOB_CHOICE] = current if current in ids else ids[0]
    chosen = st.selectbox("Job", ids, key=JOB_CHOICE, format_func=lambda i: f"{i} · {outs[i]}",
                          on_change=_remember_job)
    job = all_jobs[ids.index(chosen)] if chosen in ids else all_jobs[0]
    if job.status().get("state") in jobs.TERMINAL:
        progress(job)
        result = job.result()
        if result:
            evaluation(result)
    else:
        _live(str(job.path))


def started_by(job: jobs.Job) -> str:
    """Who started the job (display name), or '—' for jobs from before this was recorded."""
    who = job.started_by()
    return who.get("name") or who.get("subject") or "—"


def _remember_job() -> None:
    st.session_state[CURRENT_JOB] = st.session_state.get(JOB_CHOICE)


@st.fragment(run_every=2)
def _live(job_path: str) -> None:
    """Polls the job folder every 2 s while the job is active; a final full rerun shows the result."""
    if progress(jobs.Job(Path(job_path))) in jobs.TERMINAL:
        st.rerun()


@st.cache_data(show_spinner="Checking the dataset…", max_entries=4)
def _check(path: str, pattern: str | None, min_per_class: int) -> tuple[
        DatasetIndex | None, tuple[str, list[dict[str, str]]] | None, dict[str, list[np.ndarray]]]:
    """The dataset's index (no pixels), or why not (the error and the unreadable files), and a few
    thumbnails per class. Cached per folder."""
    try:
        index, thumbs = check_dataset(Path(path), pattern, min_per_class)
    except DatasetError as exc:
        return None, (str(exc), exc.unreadable), {}
    except MedUIError as exc:  # the jobs folder cannot hold the pseudonym salt, ...
        return None, (str(exc), []), {}
    return index, None, thumbs


def _unreadable(files: list[dict[str, str]], expanded: bool = False) -> None:
    """The files that could not be used, each with its reason (the first 200)."""
    if not files:
        return
    with st.expander(f"Unreadable files ({len(files)})", expanded=expanded, icon=":material/report:"):
        for u in files[:200]:
            st.markdown(f"- **{md(u['file'])}** {md(u['reason'])}")
        if len(files) > 200:
            st.caption(f"… and {len(files) - 200} more")


def dataset_report(path: Path, pattern: str | None, min_per_class: int) -> DatasetIndex | None:
    """What the check found, shown in words, counts and thumbnails; the index when it can be trained on."""
    index, problem, thumbs = _check(str(path), pattern or None, min_per_class)
    if problem:
        st.error(f"This dataset cannot be trained on: {problem[0]}", icon=":material/error:")
        _unreadable(problem[1], expanded=True)
        return None
    assert index is not None
    report = index.report.to_json()
    st.markdown(f"**Classes:** {', '.join(report['classes'])} · **patients grouped by:** {report['grouping']} · "
                f"**imbalance:** {report['imbalance']}:1")
    rows = [{"split": sp, **counts} for sp, counts in report["counts"].items()]
    st.dataframe(rows, hide_index=True)
    cols = st.columns(len(thumbs) or 1)
    for col, (label, imgs) in zip(cols, thumbs.items(), strict=False):
        col.image(imgs, width=90, caption=[label] * len(imgs))
    for w in report["warnings"]:
        st.warning(w)
    _unreadable(report["unreadable"])
    if report["duplicates"]:
        with st.expander(f"{len(report['duplicates'])} group(s) of exact duplicates"):
            for g in report["duplicates"][:50]:
                st.markdown("- " + " = ".join(g))
    st.caption(f"Sizes: {report['sizes']} · modalities: {report['modalities']} · patients per class: "
               f"{report['patients']}")
    return index


def curves(rows: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    epochs = [r["epoch"] for r in rows]
    for key, dash in (("loss", None), ("val_loss", "dot"), ("auc", None), ("val_auc", "dot")):
        if rows and key in rows[-1]:
            fig.add_trace(go.Scatter(x=epochs, y=[r.get(key) for r in rows], name=key, mode="lines+markers",
                                     line=dict(dash=dash), yaxis="y2" if "auc" in key else "y"))
    fig.update_layout(height=280, margin=dict(l=10, r=10, t=10, b=30), xaxis=dict(title="epoch"),
                      yaxis=dict(title="loss"), yaxis2=dict(title="AUC", overlaying="y", side="right", range=[0, 1]),
                      legend=dict(orientation="h"), paper_bgcolor="rgba(0,0,0,0)")
    return fig


def progress(job: jobs.Job) -> str:
    """Status, progress bar with ETA, curves, log tail and cancel. Returns the job state."""
    status = job.status()
    state = str(status.get("state", "queued"))
    epochs = int(job.params().get("epochs", 1))
    epoch = int(status.get("epoch", 0))
    eta = status.get("eta_s")
    # early stopping may end training before the last epoch: the estimate is an upper bound
    label = f"{state} · epoch {epoch}/{epochs}" + (f" · at most {int(eta) // 60} min {int(eta) % 60} s left "
                                                    "(early stopping may end it sooner)"
                                                    if eta is not None and state == "running" else "")
    st.caption(f"Started by {md(started_by(job))}")
    if status.get("plan"):
        st.caption(f"Training: {status['plan']}")
    st.progress(1.0 if state == "done" else min(epoch / max(epochs, 1), 1.0), text=label)
    if status.get("message"):
        st.caption(status["message"])
    if state == "failed":
        st.error(f"Training failed: {status.get('error', 'unknown error')}", icon=":material/error:")
    rows = job.metrics()
    if rows:
        st.plotly_chart(curves(rows), width="stretch", key=f"train.curves.{job.id}")
    who = auth.actor()  # the session's user (this runs in a fragment too: passed, not taken from the context)
    owner = job.started_by().get("subject")
    cancellable = state in ("queued", "running") and who.can("cancel-job") and (
        not owner or owner == who.subject or who.can("cancel-any-job"))
    if cancellable and st.button("Cancel training", key=f"train.cancel.{job.id}", icon=":material/cancel:"):
        try:
            cancel(job, actor=who)
        except MedUIError as exc:
            auth.not_allowed(exc)
        else:
            st.toast("Cancelling after the current batch…")
    with st.expander("Log", expanded=state == "failed"):
        st.code(job.log_tail(40) or "(empty)", language=None)
    return state


def _roc_pr(ev: dict[str, Any], parent: dict[str, Any] | None) -> tuple[go.Figure, go.Figure]:
    roc, pr = go.Figure(), go.Figure()
    for name, e in (("new model", ev), ("parent", parent)):
        if e and "roc" in e:
            roc.add_trace(go.Scatter(x=e["roc"]["fpr"], y=e["roc"]["tpr"], name=f"{name} (AUC {e['auc']:.3f})"))
            pr.add_trace(go.Scatter(x=e["pr"]["recall"], y=e["pr"]["precision"], name=name))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="dot", color="grey"), showlegend=False))
    roc.update_layout(title="ROC", xaxis_title="1 - specificity", yaxis_title="sensitivity", height=320)
    pr.update_layout(title="Precision-recall", xaxis_title="recall", yaxis_title="precision", height=320)
    return roc, pr


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


def evaluation(result: dict[str, Any]) -> None:
    ev, parent = result["evaluation"], result.get("parent_evaluation")
    if result.get("evaluation_failed"):
        st.error(f"**Evaluation failed:** {result.get('calibration_warning')}. **{result['model']}** was registered "
                 "as a candidate flagged as failed, for inspection only; do not promote it.", icon=":material/error:")
    else:
        st.success(f"Registered **{result['model']}** as a candidate; review and promote it on the Models page.",
                   icon=":material/check_circle:")
    band = result.get("indeterminate")
    if band:
        st.caption(f"Indeterminate band (chosen on the validation split): calibrated probabilities from "
                   f"{band[0]:.3f} to {band[1]:.3f} around the threshold are reported as indeterminate.")
    table = []
    for name, e in (("new: " + result["model"], ev), (f"parent: {result.get('parent')}", parent)):
        if e:
            r = _r
            ci = e.get("auc_ci") or [None, None]
            table.append({"model": name, "n": e["n"], "AUC": r(e.get("auc")),
                          "AUC 95% CI": f"{r(ci[0])}–{r(ci[1])}", "threshold": r(e.get("threshold")),
                          "sensitivity": r(e.get("sensitivity")), "specificity": r(e.get("specificity")),
                          "PPV": r(e.get("ppv")), "NPV": r(e.get("npv")), "accuracy": r(e.get("accuracy"))})
    st.dataframe(table, hide_index=True, width="stretch")
    c1, c2, c3 = st.columns(3)
    roc, pr = _roc_pr(ev, parent)
    c1.plotly_chart(roc, width="stretch", key="train.eval-roc")
    c2.plotly_chart(pr, width="stretch", key="train.eval-pr")
    cm = np.asarray(ev["confusion_matrix"])
    classes = ev["classes"]
    heat = go.Figure(go.Heatmap(z=cm, x=[f"called {c}" for c in classes], y=[f"true {c}" for c in classes],
                                text=cm, texttemplate="%{text}", colorscale="Blues", showscale=False))
    heat.update_layout(title="Confusion matrix at the threshold", height=320, yaxis=dict(autorange="reversed"))
    c3.plotly_chart(heat, width="stretch", key="train.eval-cm")
    cal = ev.get("calibration")
    if cal:
        fig = go.Figure([go.Scatter(x=cal["mean_predicted"], y=cal["observed"], mode="lines+markers", name="model"),
                         go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="dot", color="grey"), name="perfect")])
        fig.update_layout(title=f"Calibration (ECE {cal['ece']:.3f})", xaxis_title="predicted probability",
                          yaxis_title="observed frequency", height=300)
        st.plotly_chart(fig, width="stretch", key="train.eval-cal")
    st.caption(f"Trained on {result['device']} (mixed precision {'on' if result['mixed_precision'] else 'off'}) "
               f"in {result['train_s']:.0f} s.")
