"""Models page widgets: the registry table with each model's status, a model's card with downloads and
delete, the comparison and Promote for a candidate, and the add form (a new model is a candidate)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import streamlit as st

from medui.accounts.actor import LOCAL
from medui.ai.promotion import Status, auc_interval, blocking, held_out_auc
from medui.ai.registry import ModelShape
from medui.errors import MedUIError, PromotionRefusedError
from medui.ui import auth, modelcache
from medui.ui.markdown import md
from medui.usecases.models import CardFields, Comparison, compare, inspect_upload, promote, register_upload

FLASH = "models.flash"  # (kind, text) shown once after a rerun
INSPECTED = "models.inspected"  # (file id, ModelShape | error text) of the last upload
REGISTERED = "models.registered"  # fingerprint of the last registered upload -> model id


def flash() -> None:
    """The message of the last action (kept across the rerun that shows its result)."""
    kind, text = st.session_state.pop(FLASH, (None, ""))
    if kind == "success":
        st.success(text, icon=":material/check_circle:")
    elif kind == "info":
        st.info(text, icon=":material/info:")


def _user() -> str | None:
    """The signed-in user for the registry's audit.jsonl ('Name (subject)'); None in single-user mode."""
    who = auth.actor()
    return None if who == LOCAL else who.label


def registered_by(state: Status) -> str:
    """Who registered the model (the user who uploaded it, or who started the training job), or '—'."""
    who = state.entry.card.registered_by
    return str(who.get("name") or who.get("subject") or "—")


def _auc_text(state: Status) -> str:
    auc, ci = held_out_auc(state.entry.card), auc_interval(state.entry.card)
    if auc is None:
        return "not evaluated"
    return f"{auc:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def registry_table(models: list[Status]) -> None:
    st.dataframe([{"model": s.entry.id, "status": s.label, "task": s.task, "AUC (95% CI)": _auc_text(s),
                   "architecture": s.entry.card.architecture, "threshold": round(s.entry.card.threshold, 3),
                   "created": s.entry.card.created, "registered by": registered_by(s),
                   "parent": s.entry.card.parent or "", "demo": s.entry.card.demo}
                  for s in models], hide_index=True, width="stretch")


def model_card(state: Status) -> None:
    """The card of one model with its status, downloads and Delete (not for the demo model); for a
    model that is not promoted, the comparison and Promote."""
    entry, card = state.entry, state.entry.card
    if card.demo:
        st.info("This is the demonstration model, trained on synthetic phantoms only.", icon=":material/science:")
    _status_line(state)
    st.caption(f"Registered by {md(registered_by(state))} on {md(card.created)}.")
    st.markdown(f"**Intended use.** {md(card.intended_use)}  \n**Limitations.** {md(card.limitations or '—')}  \n"
                f"**Trained on.** {md(json.dumps(card.training_data))}  \n**Threshold.** {card.threshold:.3f} — "
                f"{md(card.threshold_method)}")
    if card.metrics:
        st.json(card.metrics, expanded=False)
    with st.expander("Full card (JSON)"):
        st.json(card.to_json())
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download .keras", entry.path.read_bytes(), file_name=entry.path.name,
                       key="models.download-model", icon=":material/download:")
    c2.download_button("Download card", json.dumps(card.to_json(), indent=2), file_name=f"{card.id}.json",
                       key="models.download-card", icon=":material/download:")
    who = auth.actor()
    if not card.demo and who.can("delete-model") and c3.button("Delete", key="models.delete", type="secondary",
                                                                icon=":material/delete:"):
        try:
            modelcache.delete(entry, user=_user(), actor=who)
        except MedUIError as exc:
            st.error(f"{entry.id} was not deleted: {exc}", icon=":material/error:")
            return
        st.session_state[FLASH] = ("success", f"Deleted {entry.id}.")
        st.rerun()
    if (not state.promoted or state.demo_fallback) and who.can("promote-model"):
        promotion_panel(compare(entry.id, entry.path.parent))


def _status_line(state: Status) -> None:
    task = md(state.task)
    if state.demo_fallback:
        st.markdown(f":material/verified: **Promoted (demo)** for *{task}*: no other model is promoted for this "
                    "task, so the demo model is the default.")
    elif state.promoted:
        rec = state.record
        how = f"; override: {md(str(rec['override']))}" if rec.get("override") else ""
        who = f" by {md(str(rec['user']))}" if rec.get("user") else ""
        st.markdown(f":material/verified: **Promoted** for *{task}* on {md(str(rec.get('time', '?')))}{who}{how}. "
                    "Diagnose uses it by default.")
    else:
        st.markdown(f":material/pending: **Candidate** for *{task}*: not used by default on the Diagnose page "
                    "until an ML engineer promotes it.")


def promotion_panel(cmp: Comparison) -> None:
    """The model beside the promoted model and its parent, the gate's findings, and Promote."""
    model = cmp.model.entry
    st.subheader("Compare and promote")
    st.dataframe(cmp.rows(), hide_index=True, width="stretch")
    if len(cmp.columns) > 1:
        if cmp.same_data:
            how = ("measured side by side by this model's training run" if cmp.compared
                   else "as their cards describe it")
            st.caption(f"All of them were evaluated on the same held-out images ({how}).")
        else:
            st.caption(":material/warning: Evaluated on different (or undescribed) held-out data: compare them on the "
                       f"same data with `python -m medui evaluate DATA --model {model.id}` and the same for the "
                       "others.")
    stops = blocking(cmp.findings)
    for f in cmp.findings:
        if f.blocking:
            st.error(md(f.message), icon=":material/block:")
        else:
            st.info(md(f.message), icon=":material/info:")
    if not stops:
        st.success("The gate passes: held-out AUC present, its 95% CI excludes 0.5, not below its parent.",
                   icon=":material/check_circle:")
    label = ("Override reason (required: the gate refused this model; recorded in the audit log)" if stops
             else "Note (optional, recorded in the audit log)")
    reason = st.text_area(label, key=f"models.override.{model.id}")
    if st.button("Override and promote" if stops else "Promote", key="models.promote", type="primary",
                 icon=":material/verified:"):
        if stops and not reason.strip():
            st.error("Give the override reason first: the gate refused this model.", icon=":material/error:")
            return
        try:
            done = promote(model.id, override=reason or None, user=_user(), via="app", root=model.path.parent,
                           actor=auth.actor())
        except (PromotionRefusedError, MedUIError) as exc:
            st.error(str(exc), icon=":material/error:")
            return
        before = f" (before: {done.previous})" if done.previous else ""
        st.session_state[FLASH] = ("success", f"Promoted {model.id} for '{done.status.task}'{before}. Diagnose and "
                                              "`python -m medui predict` now use it by default.")
        st.rerun()


def _inspected(file_id: str, data: bytes, name: str) -> ModelShape | str:
    """The upload's shape (loaded once per uploaded file), or the error text naming the user's file."""
    seen = st.session_state.get(INSPECTED)
    if not seen or seen[0] != file_id:
        try:
            with st.spinner(f"Reading {name}…"):
                result: ModelShape | str = inspect_upload(data, name)
        except MedUIError as exc:
            result = str(exc)
        st.session_state[INSPECTED] = seen = (file_id, result)
    shape: ModelShape | str = seen[1]
    return shape


def _fingerprint(data: bytes, card: Any) -> str:
    return hashlib.sha256(data + repr(card).encode()).hexdigest()


def add_form() -> None:
    """Upload a .keras file with its card (a JSON file, or the form's fields); validate and register
    it as a candidate, once per click."""
    st.subheader("Add a model")
    st.caption("A Keras 3 `.keras` file, loaded in safe mode (files with Lambda layers or other code are refused), "
               "with its card: upload the JSON, or fill in the form. A new model is a candidate until promoted.")
    up = st.file_uploader("Model (.keras)", type=["keras"], key="models.add-model")
    card_file = st.file_uploader("Card (.json, optional)", type=["json"], key="models.add-card")
    shape: ModelShape | str | None = _inspected(up.file_id, up.getvalue(), up.name) if up is not None else None
    if isinstance(shape, str):
        st.error(shape, icon=":material/error:")
    elif shape is not None:
        kind = "binary (1 sigmoid output)" if shape.outputs == 1 else f"{shape.outputs} classes (softmax)"
        st.caption(f"Read from {md(up.name if up else '')}: input {shape.input_size[0]}x{shape.input_size[1]}, "
                   f"{shape.channels} channel(s), {kind}.")
    with st.form("models.card-form"):
        name = st.text_input("Name", "my-model", key="models.name")
        classes = st.text_input("Class names (comma-separated, negative first)", "normal,abnormal",
                                key="models.classes")
        cams = list(shape.cam_layers) if isinstance(shape, ModelShape) else []
        if cams:
            cam = str(st.selectbox("CAM layer (feature maps; the last convolutional activation is best)", cams,
                                   key="models.cam-layer"))
        else:
            cam = st.text_input("CAM layer (last convolutional activation)", "", key="models.cam-layer-name")
        threshold = st.number_input("Decision threshold", 0.001, 0.999, 0.5, key="models.threshold")
        data = st.text_area("What was it trained on?", "", key="models.training-data")
        submitted = st.form_submit_button("Validate and register", type="primary")
    if not submitted:
        return
    if up is None:
        st.error("Choose a .keras file first.", icon=":material/error:")
        return
    card: bytes | CardFields
    if card_file is not None:
        card = card_file.getvalue()
    else:
        card = CardFields(name=name, class_names=CardFields.parse_classes(classes), cam_layer=cam,
                          threshold=float(threshold), training_data=data)
    model_bytes = up.getvalue()
    key = _fingerprint(model_bytes, card)
    done: dict[str, str] = st.session_state.setdefault(REGISTERED, {})
    if key in done:
        st.info(f"{up.name} with this card is already registered as {done[key]}; change the file or the card to "
                "register another version.", icon=":material/info:")
        return
    try:
        with st.spinner(f"Validating {up.name}…"):
            entry = register_upload(model_bytes, up.name, card, card_name=card_file.name if card_file else "the card",
                                    actor=auth.actor())
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    done[key] = entry.id
    st.session_state[FLASH] = ("success", f"Registered {entry.id} as a candidate. Diagnose does not use it by "
                                          "default: review its metrics here and promote it when it passes the gate.")
    st.rerun()
