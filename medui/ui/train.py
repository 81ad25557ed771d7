"""Train page widgets: dataset upload and check, job parameters, live progress, evaluation."""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from medui.errors import DatasetError
from medui.reading.display import apply_window, auto_window
from medui.training import jobs
from medui.training.data import Dataset, scan


def server_folder(text: str) -> tuple[Path | None, str | None]:
    """A folder on the server, allowed only inside MEDUI_DATA_ROOTS (':'-separated) when that is set."""
    import os

    path = Path(text).expanduser().resolve()
    roots = [Path(r).expanduser().resolve() for r in os.environ.get("MEDUI_DATA_ROOTS", "").split(":") if r]
    if roots and not any(path == r or r in path.parents for r in roots):
        return None, (f"{path} is outside the folders this server allows ({', '.join(map(str, roots))}); "
                      "ask the administrator or upload the folder instead")
    if not path.is_dir():
        return None, f"{path} does not exist on the server (or is not a folder)"
    return path, None


def save_upload(files) -> Path | None:  # type: ignore[no-untyped-def]
    """Write uploaded files (relative paths kept, '..' refused) under jobs/uploads/<digest>/."""
    if not files:
        return None
    digest = hashlib.sha1("".join(sorted(f"{f.name}:{f.size}" for f in files)).encode()).hexdigest()[:12]
    root = jobs.jobs_dir() / "uploads" / digest
    if not root.exists():
        for f in files:
            parts = [p for p in PurePosixPath(f.name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
            target = root.joinpath(*parts) if parts else root / "unnamed"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.getvalue())
    return root


@st.cache_data(show_spinner="Checking the dataset…", max_entries=4)
def _scan(path: str, pattern: str | None, min_per_class: int) -> tuple[dict | None, str | None, dict]:
    """Report (as JSON), an error text, and a few thumbnails per class. Cached per folder."""
    try:
        ds: Dataset = scan([path], pattern, min_per_class)
    except DatasetError as exc:
        return None, str(exc), {}
    thumbs: dict[str, list[np.ndarray]] = {}
    for s in ds.samples:
        if len(thumbs.setdefault(s.label, [])) < 4:
            img = s.image if s.image.ndim == 2 else s.image.mean(axis=2)
            thumbs[s.label].append(apply_window(img, auto_window(img), s.invert))
    return ds.report.to_json(), None, thumbs


def dataset_report(path: Path, pattern: str | None, min_per_class: int) -> dict | None:
    report, error, thumbs = _scan(str(path), pattern or None, min_per_class)
    if error:
        st.error(f"This dataset cannot be trained on: {error}")
        return None
    assert report is not None
    st.markdown(f"**Classes:** {', '.join(report['classes'])} · **patients grouped by:** {report['grouping']} · "
                f"**imbalance:** {report['imbalance']}:1")
    rows = [{"split": sp, **counts} for sp, counts in report["counts"].items()]
    st.dataframe(rows, hide_index=True)
    cols = st.columns(len(thumbs) or 1)
    for col, (label, imgs) in zip(cols, thumbs.items()):
        col.image(imgs, width=90, caption=[label] * len(imgs))
    for w in report["warnings"]:
        st.warning(w)
    if report["unreadable"]:
        with st.expander(f"{len(report['unreadable'])} file(s) skipped"):
            for u in report["unreadable"][:200]:
                st.markdown(f"- **{u['file']}** {u['reason']}")
    if report["duplicates"]:
        with st.expander(f"{len(report['duplicates'])} group(s) of exact duplicates"):
            for g in report["duplicates"][:50]:
                st.markdown("- " + " = ".join(g))
    st.caption(f"Sizes: {report['sizes']} · modalities: {report['modalities']} · patients per class: "
               f"{report['patients']}")
    return report


def curves(rows: list[dict]) -> go.Figure:
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
    state = status.get("state", "queued")
    epochs = int(job.params().get("epochs", 1))
    epoch = int(status.get("epoch", 0))
    eta = status.get("eta_s")
    label = f"{state} · epoch {epoch}/{epochs}" + (f" · about {int(eta) // 60} min {int(eta) % 60} s left"
                                                    if eta is not None and state == "running" else "")
    st.progress(1.0 if state == "done" else min(epoch / max(epochs, 1), 1.0), text=label)
    if status.get("message"):
        st.caption(status["message"])
    if state == "failed":
        st.error(f"Training failed: {status.get('error', 'unknown error')}")
    rows = job.metrics()
    if rows:
        st.plotly_chart(curves(rows), width="stretch", key=f"curves-{job.id}")
    if state in ("queued", "running"):
        if st.button("Cancel training", key=f"cancel-{job.id}"):
            job.cancel()
            st.toast("Cancelling after the current batch…")
    with st.expander("Log", expanded=state == "failed"):
        st.code(job.log_tail(40) or "(empty)", language=None)
    return state


def _roc_pr(ev: dict, parent: dict | None) -> tuple[go.Figure, go.Figure]:
    roc, pr = go.Figure(), go.Figure()
    for name, e in (("new model", ev), ("parent", parent)):
        if e and "roc" in e:
            roc.add_trace(go.Scatter(x=e["roc"]["fpr"], y=e["roc"]["tpr"], name=f"{name} (AUC {e['auc']:.3f})"))
            pr.add_trace(go.Scatter(x=e["pr"]["recall"], y=e["pr"]["precision"], name=name))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="dot", color="grey"), showlegend=False))
    roc.update_layout(title="ROC", xaxis_title="1 - specificity", yaxis_title="sensitivity", height=320)
    pr.update_layout(title="Precision-recall", xaxis_title="recall", yaxis_title="precision", height=320)
    return roc, pr


def evaluation(result: dict) -> None:
    ev, parent = result["evaluation"], result.get("parent_evaluation")
    st.success(f"Registered **{result['model']}** — open it on the Diagnose page.")
    table = []
    for name, e in (("new: " + result["model"], ev), (f"parent: {result.get('parent')}", parent)):
        if e:
            def r(v):  # type: ignore[no-untyped-def]
                return None if v is None else round(float(v), 3)

            ci = e.get("auc_ci") or [None, None]
            table.append({"model": name, "n": e["n"], "AUC": r(e.get("auc")),
                          "AUC 95% CI": f"{r(ci[0])}–{r(ci[1])}", "threshold": r(e.get("threshold")),
                          "sensitivity": r(e.get("sensitivity")), "specificity": r(e.get("specificity")),
                          "PPV": r(e.get("ppv")), "NPV": r(e.get("npv")), "accuracy": r(e.get("accuracy"))})
    st.dataframe(table, hide_index=True, width="stretch")
    c1, c2, c3 = st.columns(3)
    roc, pr = _roc_pr(ev, parent)
    c1.plotly_chart(roc, width="stretch", key="eval-roc")
    c2.plotly_chart(pr, width="stretch", key="eval-pr")
    cm = np.asarray(ev["confusion_matrix"])
    classes = ev["classes"]
    heat = go.Figure(go.Heatmap(z=cm, x=[f"called {c}" for c in classes], y=[f"true {c}" for c in classes],
                                text=cm, texttemplate="%{text}", colorscale="Blues", showscale=False))
    heat.update_layout(title="Confusion matrix at the threshold", height=320, yaxis=dict(autorange="reversed"))
    c3.plotly_chart(heat, width="stretch", key="eval-cm")
    cal = ev.get("calibration")
    if cal:
        fig = go.Figure([go.Scatter(x=cal["mean_predicted"], y=cal["observed"], mode="lines+markers", name="model"),
                         go.Scatter(x=[0, 1], y=[0, 1], line=dict(dash="dot", color="grey"), name="perfect")])
        fig.update_layout(title=f"Calibration (ECE {cal['ece']:.3f})", xaxis_title="predicted probability",
                          yaxis_title="observed frequency", height=300)
        st.plotly_chart(fig, width="stretch", key="eval-cal")
    st.caption(f"Trained on {result['device']} (mixed precision {'on' if result['mixed_precision'] else 'off'}) "
               f"in {result['train_s']:.0f} s.")
