"""Streamlit glue for the hospital connection: open studies from a PACS (Viewer and Diagnose), send AI
results back (Diagnose), and the PACS page's connection test.

A retrieval runs in a background thread of the session (network only: it touches no Streamlit
state); a fragment shows its progress and a Cancel button, and the next script run hands what
arrived to `state.add_inputs`, the loader every upload goes through."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import streamlit as st

from medui.ai.saliency import METHODS
from medui.errors import MedUIError
from medui.pacs.config import config_path
from medui.pacs.model import PAGE_SIZE, Node, Page, Study, StudyQuery
from medui.ui import state
from medui.usecases import pacs, results
from medui.usecases.diagnose import Diagnosis, overlay

JOB = "pacs.job"
QUERY = "pacs.query"
PAGE = "pacs.page"
STUDY = "pacs.study"
THUMBS = "pacs.thumbs"
HEADERS = "pacs.headers"  # name -> DICOM header (no pixels) of every instance opened from a PACS
BUILT = "pacs.results"
LABELS = {"sr": "SR (DICOM)", "seg": "SEG (DICOM)", "sc": "SC (DICOM)", "pdf": "PDF (DICOM)"}
MODALITIES = ["", "CR", "DX", "CT", "MR", "US", "NM", "PT", "MG", "XA", "OT"]


@dataclass
class Job:
    """One retrieval: what, how far, and its outcome once the thread ends."""

    node: Node
    study_uid: str
    series_uid: str | None
    label: str
    expected: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    received: int = 0
    outcome: pacs.Retrieval | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            self.outcome = pacs.retrieve(self.node, self.study_uid, self.series_uid, self.expected,
                                         progress=self._progress, cancel=self.cancel)

        self.thread = threading.Thread(target=run, name="medui-pacs-retrieve", daemon=True)
        self.thread.start()

    def _progress(self, n: int, _total: int | None) -> None:
        self.received = n

    @property
    def done(self) -> bool:
        return self.outcome is not None


def _nodes() -> dict[str, Node] | None:
    try:
        return pacs.nodes()
    except MedUIError as exc:
        st.error(f"The PACS configuration cannot be used: {exc}", icon=":material/error:")
        return None


def _node_picker(nodes: dict[str, Node], key: str) -> Node:
    names = list(nodes)
    name = st.selectbox("PACS", names, key=key, format_func=lambda n: nodes[n].describe()) if len(names) > 1 \
        else names[0]
    return nodes[str(name)]


def open_panel() -> None:
    """Search a PACS, list a study's series with thumbnails, retrieve a series or the whole study."""
    nodes = _nodes()
    if nodes is None:
        return
    if not nodes:
        st.caption(f"No PACS is configured. Add a node to {config_path()} (see the PACS page) or set "
                   "MEDUI_DICOMWEB_URL.")
        return
    _finish_job()
    if st.session_state.get(JOB) is not None:
        _job_progress()
        return
    node = _node_picker(nodes, "pacs.node")
    with st.form("pacs.search"):
        a, b, c = st.columns(3)
        pid = a.text_input("Patient ID")
        name = b.text_input("Patient name", help="Wildcards: * and ?, e.g. DOE^J*")
        acc = c.text_input("Accession number")
        d, e, f = st.columns(3)
        date_from = d.date_input("Study date from", value=None, min_value=date(1900, 1, 1))
        date_to = e.date_input("to", value=None, min_value=date(1900, 1, 1))
        modality = f.selectbox("Modality", MODALITIES, format_func=lambda m: m or "any")
        if st.form_submit_button("Search", icon=":material/search:", type="primary"):
            st.session_state[QUERY] = StudyQuery(pid, name, acc, date_from if isinstance(date_from, date) else None,
                                                 date_to if isinstance(date_to, date) else None, modality)
            st.session_state[PAGE] = 0
            st.session_state.pop(STUDY, None)
    query = st.session_state.get(QUERY)
    if query is not None:
        _results(node, query)


def _results(node: Node, query: StudyQuery) -> None:
    offset = int(st.session_state.get(PAGE, 0))
    try:
        page: Page[Study] = pacs.search(node, query, offset)
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if not page.items:
        st.info("No study matches." if offset == 0 else "No more studies.", icon=":material/info:")
        return
    st.caption(f"Studies {offset + 1}–{offset + len(page.items)}" + (" (more on the next page)" if page.more else ""))
    labels = {s.uid: _study_label(s) for s in page.items}
    uid = st.radio("Study", list(labels), format_func=lambda u: labels[u], key=f"pacs.study.{offset}")
    prev, nxt, _ = st.columns([1, 1, 4])
    if prev.button("Previous", disabled=offset == 0, key="pacs.prev", icon=":material/chevron_left:"):
        st.session_state[PAGE] = max(0, offset - PAGE_SIZE)
        st.rerun()
    if nxt.button("Next", disabled=not page.more, key="pacs.next", icon=":material/chevron_right:"):
        st.session_state[PAGE] = offset + PAGE_SIZE
        st.rerun()
    study = next(s for s in page.items if s.uid == uid)
    _series(node, study)


def _study_label(s: Study) -> str:
    day = f"{s.date[:4]}-{s.date[4:6]}-{s.date[6:]}" if len(s.date) == 8 else (s.date or "no date")
    parts = [day, s.modalities or "?", s.description or "(no description)", f"{s.patient_name or '?'} ({s.patient_id})"]
    if s.accession:
        parts.append(f"acc. {s.accession}")
    if s.n_instances is not None:
        parts.append(f"{s.n_instances} instance(s)")
    return " · ".join(parts)


def _series(node: Node, study: Study) -> None:
    try:
        found = pacs.series(node, study.uid)
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    if st.button(f"Open the whole study ({len(found)} series)", key="pacs.open-study", icon=":material/download:"):
        _start(Job(node, study.uid, None, f"study of {study.date or 'unknown date'}", study.n_instances))
    thumbs: dict[str, bytes | None] = st.session_state.setdefault(THUMBS, {})
    for info in found:
        pic, text, act = st.columns([1, 4, 1])
        if info.uid not in thumbs:
            thumbs[info.uid] = pacs.thumbnail(node, info)
        thumb = thumbs[info.uid]
        if thumb:
            pic.image(thumb, width=96)
        text.markdown(f"**{info.modality or '?'}** #{info.number or '-'} · {info.description or '(no description)'} · "
                      f"{info.n_instances if info.n_instances is not None else '?'} instance(s)")
        if act.button("Open", key=f"pacs.open.{info.uid}", icon=":material/download:"):
            _start(Job(node, study.uid, info.uid, f"{info.modality} {info.description}".strip(), info.n_instances))


def _start(job: Job) -> None:
    job.start()
    st.session_state[JOB] = job
    st.rerun()


@st.fragment(run_every=0.5)
def _job_progress() -> None:
    job: Job | None = st.session_state.get(JOB)
    if job is None:
        return
    if job.done:
        st.rerun(scope="app")
    total = job.expected or 0
    fraction = min(job.received / total, 1.0) if total else 0.0
    st.progress(fraction, text=f"Retrieving {job.label} from {job.node.name}: {job.received}"
                               + (f" of {total}" if total else "") + " instance(s)…")
    if st.button("Cancel", key="pacs.cancel", icon=":material/cancel:", disabled=job.cancel.is_set()):
        job.cancel.set()


def _finish_job() -> None:
    """Open what a finished retrieval brought (only a complete one); say why otherwise."""
    job: Job | None = st.session_state.get(JOB)
    if job is None or not job.done or job.outcome is None:
        return
    st.session_state[JOB] = None
    got = job.outcome
    if got.cancelled:
        st.warning(f"Retrieval cancelled after {len(got.items)} instance(s); nothing from it was opened.",
                   icon=":material/cancel:")
        return
    if got.error:
        st.error(f"Retrieval stopped after {len(got.items)} instance(s); nothing from it was opened. {got.error}",
                 icon=":material/error:")
        return
    headers: dict[str, Any] = st.session_state.setdefault(HEADERS, {})
    if not state.loaded():  # everything was closed: so are the headers kept for results
        headers.clear()
    headers.update(results.headers_from_bytes(got.items))
    record = state.add_inputs(got.items, f"{job.node.name}: {job.label}")
    st.toast(f"{got.summary()} — {record.summary()}")


def results_panel(dx: Diagnosis, index: int) -> None:
    """Build the AI results (SR, SEG, SC, PDF) of the shown slice, download each, send them to a PACS.
    An image without DICOM source headers (a PNG/JPEG upload, a sample) gets the PDF report only, and
    the panel says why the rest needs a DICOM source."""
    headers: dict[str, Any] = st.session_state.get(HEADERS, {})
    dicom = results.has_dicom_source(dx, headers)
    st.subheader("Results as DICOM and PDF" if dicom else "PDF report")
    if dicom:
        st.caption("A structured report, a segmentation of the saliency map, a secondary capture of the overlay "
                   "and a PDF report, in the image's study, marked 'not for primary diagnosis'. Nothing is sent "
                   "unless you click 'Send to PACS'.")
    else:
        what = "has no DICOM source" if dx.series.source_format != "DICOM" else "has no DICOM headers at hand"
        st.info(f"This image {what}, so only the PDF report can be made. {results.why_pdf_only(dx)}",
                icon=":material/info:")
    key = (dx.series.uid, dx.series.files[0] if dx.series.files else "", dx.model.entry.id, index)
    method = str(st.selectbox("Saliency method", list(METHODS), key="pacs.method",
                                  format_func=lambda m: METHODS[m]))
    built: dict[Any, results.Results] = st.session_state.setdefault(BUILT, {})
    if st.button("Build results" if dicom else "Build PDF report", key="pacs.build", icon=":material/description:"):
        try:
            with st.spinner("Building SR, SEG, SC and PDF…" if dicom else "Building the PDF report…"):
                if dicom:
                    source, sources = results.source_headers(dx, headers, index)
                    made = results.build(results.result_input(dx, overlay(dx, index, method), source, sources))
                else:
                    made = results.report_only(dx, overlay(dx, index, method))
            st.session_state[BUILT] = built = {key: made}  # only the latest: results keep images alive
        except MedUIError as exc:
            st.info(str(exc), icon=":material/info:")
    shown = built.get(key)
    if shown is None:
        return
    _result_actions(shown)


def _downloaded(kind: str, sop_instance_uid: str, study_uid: str) -> None:
    """A download button's click, in the audit trail (a callback runs before the page, so the actor is named)."""
    from medui.ui import auth

    results.record_download(kind, sop_instance_uid, study_uid, actor=auth.actor())


def _result_actions(made: results.Results) -> None:
    for note in made.notes if made.objects else []:  # without objects the one note is the panel's info
        st.warning(note, icon=":material/warning:")
    cols = st.columns(len(made.objects) + 1)
    study = str(made.objects[0].dataset.get("StudyInstanceUID", "")) if made.objects else ""
    for col, obj in zip(cols, made.objects, strict=False):
        col.download_button(LABELS[obj.kind], obj.to_bytes(), obj.filename, "application/dicom",
                            key=f"pacs.dl.{obj.kind}", icon=":material/download:", on_click=_downloaded,
                            args=(obj.kind, obj.sop_instance_uid, study))
    pdf_uid = next((o.sop_instance_uid for o in made.objects if o.kind == "pdf"), "")
    cols[-1].download_button("PDF report", made.pdf, "medui-report.pdf", "application/pdf", key="pacs.dl.report",
                             icon=":material/picture_as_pdf:", on_click=_downloaded, args=("report", pdf_uid, study))
    if not made.objects:
        return  # nothing that a PACS could file (no DICOM study): the panel said why
    nodes = _nodes()
    if not nodes:
        return
    node = _node_picker(nodes, "pacs.send-node")
    if st.button("Send to PACS", key="pacs.send", type="primary", icon=":material/upload:"):
        try:
            with st.spinner(f"Sending {len(made.objects)} object(s) to {node.name}…"):
                stored = results.send(made, node)
            st.success(f"{node.name} stored {len(stored)} object(s).", icon=":material/check_circle:")
        except MedUIError as exc:
            st.error(str(exc), icon=":material/error:")


def settings_panel() -> None:
    """The configured nodes (never their credentials) and a connection test for each."""
    nodes = _nodes()
    if nodes is None:
        return
    st.caption(f"Nodes come from {config_path()} (or MEDUI_PACS_CONFIG) and MEDUI_DICOMWEB_URL (the node 'default').")
    if not nodes:
        st.info("No PACS is configured yet. See README, 'Hospital connection', for a full example.",
                icon=":material/info:")
        return
    for name, node in nodes.items():
        with st.container(border=True):
            st.markdown(f"**{name}** — {node.describe().split(': ', 1)[1]}")
            if st.button("Test connection", key=f"pacs.echo.{name}", icon=":material/network_check:"):
                for proto, ok, message in pacs.echo(node):
                    (st.success if ok else st.error)(f"{proto}: {message}")
