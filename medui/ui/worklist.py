"""Worklist page widgets: start a batch scoring job, follow the jobs (refreshing while one runs), the
studies sorted by score with filters, a CSV export, a re-score with another model, and opening a study
in Diagnose by its Study Instance UID."""

from __future__ import annotations

from datetime import date
from typing import Any

import streamlit as st

from medui.accounts.actor import Actor
from medui.errors import MedUIError, NotAllowedError
from medui.training.jobs import TERMINAL
from medui.ui import auth, modelcache, state
from medui.ui.markdown import md
from medui.usecases import batch

SHOWN = "worklist.shown"  # the study UIDs in the order the table showed them (selection -> UID)
OPEN = "worklist.open"  # the study opened from the worklist: {"study_uid", "series_uid", "item", "model"}
DIAGNOSE_SERIES, DIAGNOSE_MODEL = "dx.series", "dx.model"  # Diagnose's pickers (preselected on open)


def any_running() -> bool:
    """Whether a batch job is queued or running: the page then refreshes itself."""
    return batch.any_running()


def poll_interval() -> float:
    return batch.poll_interval()


def start_panel(who: Actor) -> None:
    """Choose a source (a server folder/zip or a PACS query), a model and a cap; start the job."""
    models = [s.entry.id for s in modelcache.statuses()]
    if not models:
        st.warning("No model is registered: train the demo model with `python -m medui demo-model`.",
                   icon=":material/warning:")
        return
    with st.form("worklist.start"):
        kind = st.radio("Source", ["Server folder or zip", "PACS query"], horizontal=True, key="worklist.kind")
        folder = st.text_input("Folder or zip on the server (within MEDUI_DATA_ROOTS)", key="worklist.folder")
        c1, c2, c3, c4 = st.columns(4)
        modality = c1.selectbox("Modality (PACS)", ["", "CR", "DX", "CT", "MR"], key="worklist.q-modality",
                                format_func=lambda m: m or "any")
        since = c2.date_input("From (PACS)", value=None, key="worklist.q-from")
        until = c3.date_input("To (PACS)", value=None, key="worklist.q-to")
        accession = c4.text_input("Accession (PACS, * ?)", key="worklist.q-accession")
        c5, c6 = st.columns([3, 1])
        model = c5.selectbox("Model", models, key="worklist.model")
        limit = int(c6.number_input("At most (studies)", 1, 5000, 200, key="worklist.limit"))
        send = st.checkbox("Send the results (SR, SEG, SC, PDF) of flagged studies back to the PACS",
                           key="worklist.send", help="PACS queries only; needs the send-result permission")
        if not st.form_submit_button("Start scoring", icon=":material/play_arrow:"):
            return
    pacs = kind == "PACS query"
    request = batch.BatchRequest(model=str(model), folder="" if pacs else folder, limit=limit,
                                 modality=str(modality or "") if pacs else "", accession=accession if pacs else "",
                                 date_from=since if pacs and isinstance(since, date) else None,
                                 date_to=until if pacs and isinstance(until, date) else None, send=bool(send) and pacs)
    try:
        job = batch.start(request, who)
    except NotAllowedError as exc:
        auth.not_allowed(exc)
        return
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.toast(f"Job {job.id} started.")
    st.rerun()  # the page refreshes itself while the job runs


def _job_line(job_id: str, st_: dict[str, Any], by: dict[str, str]) -> str:
    total = st_.get("total")
    done, failed = st_.get("done") or 0, st_.get("failed") or 0
    eta = f" · about {st_['eta_s']:.0f} s left" if st_.get("eta_s") and st_.get("state") == "running" else ""
    who = f" · started by {md(by.get('name') or by['subject'])}" if by.get("name") or by.get("subject") else ""
    return (f"**{job_id}** · {st_.get('state')} · {st_.get('backend', 'local')} · {md(str(st_.get('model', '')))} · "
            f"{md(str(st_.get('source', '')))} · "
            f"{done} scored, {failed} failed of {total if total is not None else '?'}{eta}{who}")


def jobs_panel(who: Actor) -> bool:
    """Each batch job with its progress, ETA, cancel/resume and log; True while one runs."""
    running = False
    for job in batch.list_batch_jobs()[:10]:
        info = batch.state_of(job)
        live = info.get("state") not in TERMINAL
        running |= live
        st.markdown(_job_line(job.id, info, job.started_by()))
        total = info.get("total") or 0
        if total:
            st.progress(min(1.0, ((info.get("done") or 0) + (info.get("failed") or 0)) / total))
        if info.get("message") and info.get("state") == "failed":
            st.caption(str(info["message"]))
        c1, c2, c3 = st.columns([1, 1, 4])
        try:
            if live and c1.button("Cancel", key=f"worklist.cancel.{job.id}", icon=":material/stop:"):
                batch.cancel(job, who)
                st.toast(f"Job {job.id} stops after its current study.")
            if not live and info.get("state") != "done" and c2.button("Resume", key=f"worklist.resume.{job.id}",
                                                                      icon=":material/replay:"):
                batch.resume(job, who)
                st.rerun()
        except NotAllowedError as exc:
            auth.not_allowed(exc)
        except MedUIError as exc:
            st.error(str(exc), icon=":material/error:")
        with c3.expander("Log"):
            st.code(job.log_tail(20) or "(empty)")
    return running


def filters() -> dict[str, Any]:
    c1, c2, c3 = st.columns([1, 1, 2])
    flagged = c1.toggle("Flagged only", key="worklist.flagged")
    modality = c2.selectbox("Modality", ["", "CR", "DX", "CT", "MR", "OT"], key="worklist.modality",
                            format_func=lambda m: m or "any")
    span = c3.date_input("Study dates", value=[], key="worklist.dates")
    days = list(span) if isinstance(span, (list, tuple)) else [span]
    return {"flagged_only": flagged, "modality": modality or "", "date_from": days[0] if days else None,
            "date_to": days[-1] if days else None}


def _frame(rows: list[batch.WorklistRow]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    others = sorted({m for r in rows for m in r.scores if m != r.model})
    data = []
    for r in rows:
        item: dict[str, Any] = {
            "Score": r.score, "Flag": "above threshold" if r.flagged else "", "Modality": r.modality,
            "Date": f"{r.study_date[:4]}-{r.study_date[4:6]}-{r.study_date[6:]}" if len(r.study_date) == 8 else "",
            "Accession": r.accession, "Status": r.status if r.status != "failed" else f"failed: {r.reason[:200]}",
            "Model": r.model}
        for m in others:
            item[f"Score {m}"] = r.scores.get(m)
        item["Study UID"] = r.study_uid
        data.append(item)
    config: dict[str, Any] = {
        "Score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="%.3f",
                                                 help="the model's score of the study (highest slice of a volume)"),
        **{f"Score {m}": st.column_config.ProgressColumn(f"Score {m}", min_value=0.0, max_value=1.0, format="%.3f")
           for m in others}}
    return data, config


def table(who: Actor, wanted: dict[str, Any]) -> list[batch.WorklistRow]:
    """The studies, highest score first; selecting a row opens that study (by its UID) in Diagnose."""
    try:
        rows = batch.worklist(None, actor=who, **wanted)
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return []
    if not rows:
        st.info("No studies yet: start a batch above.", icon=":material/info:")
        return rows
    flagged = sum(r.flagged for r in rows)
    st.caption(f"{len(rows)} studies, {flagged} flagged above their model's threshold, highest score first. "
               "Decision support only — not a medical device. Select a row to open the study in Diagnose.")
    data, config = _frame(rows)
    event = st.dataframe(data, column_config=config, hide_index=True, width="stretch", key="worklist.table",
                         on_select="rerun", selection_mode="single-row")
    picked = _picked(event)
    st.session_state[SHOWN] = [r.study_uid for r in rows]  # for the next selection event
    if picked is not None:
        found = next((r for r in rows if r.study_uid == picked), None)
        if found is not None:
            open_study(found, who)
    return rows


def _picked(event: Any) -> str | None:
    """The study UID of the selected row, from the order the table had when it was clicked."""
    try:
        positions = list(event.selection.rows)
    except AttributeError:
        return None
    shown: list[str] = st.session_state.get(SHOWN, [])
    if not positions or positions[0] >= len(shown):
        return None
    return str(shown[int(positions[0])])


def open_study(row: batch.WorklistRow, who: Actor) -> None:
    """Load the study (from the job's folder or PACS) into the session and switch to Diagnose with its
    series and the job's model chosen."""
    if row.status != "scored":
        st.warning(f"Study {row.study_uid} was not scored ({row.status}); nothing to open.", icon=":material/info:")
        return
    try:
        with st.spinner("Opening the study…"):
            inputs = batch.study_inputs(row.job_id, row.study_uid, who)
            record = state.add_inputs(inputs, f"worklist: {row.accession or row.study_uid}")
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    items = [i for i in state.loaded() if i.key in record.keys]
    pick = next((i for i in items if i.series.uid == row.series_uid), items[0] if items else None)
    if pick is None:
        st.error(f"Study {row.study_uid} could not be opened: {record.summary()}", icon=":material/error:")
        return
    st.session_state[OPEN] = {"study_uid": row.study_uid, "series_uid": row.series_uid, "item": pick.id,
                              "model": row.model}
    st.session_state[DIAGNOSE_SERIES] = pick.id
    st.session_state[DIAGNOSE_MODEL] = row.model
    st.switch_page("pages/diagnose.py")


def export_and_rescore(rows: list[batch.WorklistRow], who: Actor) -> None:
    c1, c2, c3 = st.columns([1, 2, 1])
    c1.download_button("Download CSV", batch.to_csv(rows), file_name="medui-worklist.csv", mime="text/csv",
                       key="worklist.csv", icon=":material/download:", on_click="ignore", disabled=not rows)
    jobs_ = [j.id for j in batch.list_batch_jobs()]
    models = [s.entry.id for s in modelcache.statuses()]
    if not jobs_ or not models:
        return
    model = c2.selectbox("Re-score the latest job's studies with", models, key="worklist.rescore-model")
    if c3.button("Re-score", key="worklist.rescore", icon=":material/compare_arrows:"):
        try:
            job = batch.rescore(jobs_[0], str(model), who)
            st.toast(f"Job {job.id} started: its scores appear in a column of their own.")
        except NotAllowedError as exc:
            auth.not_allowed(exc)
        except MedUIError as exc:
            st.error(str(exc), icon=":material/error:")
