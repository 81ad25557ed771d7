"""Models page widgets: the registry table, a model's card with downloads and delete, the add form."""

from __future__ import annotations

import json

import streamlit as st

from medui.ai.registry import Entry
from medui.errors import MedUIError
from medui.ui import modelcache
from medui.usecases.models import CardFields, register_upload


def registry_table(entries: list[Entry]) -> None:
    st.dataframe([{"model": e.id, "architecture": e.card.architecture, "classes": " / ".join(e.card.class_names),
                   "threshold": round(e.card.threshold, 3), "AUC": e.card.metrics.get("auc"),
                   "created": e.card.created, "parent": e.card.parent or "", "demo": e.card.demo} for e in entries],
                 hide_index=True, width="stretch")


def model_card(entry: Entry) -> None:
    """The card of one model, its downloads, and Delete (not for the demo model)."""
    card = entry.card
    if card.demo:
        st.info("This is the demonstration model, trained on synthetic phantoms only.", icon=":material/science:")
    st.markdown(f"**Intended use.** {card.intended_use}  \n**Limitations.** {card.limitations or '—'}  \n"
                f"**Trained on.** {json.dumps(card.training_data)}  \n**Threshold.** {card.threshold:.3f} — "
                f"{card.threshold_method}")
    if card.metrics:
        st.json(card.metrics, expanded=False)
    with st.expander("Full card (JSON)"):
        st.json(card.to_json())
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download .keras", entry.path.read_bytes(), file_name=entry.path.name,
                       key="models.download-model", icon=":material/download:")
    c2.download_button("Download card", json.dumps(card.to_json(), indent=2), file_name=f"{card.id}.json",
                       key="models.download-card", icon=":material/download:")
    if not card.demo and c3.button("Delete", key="models.delete", type="secondary", icon=":material/delete:"):
        try:
            modelcache.delete(entry)
        except MedUIError as exc:
            st.error(f"{entry.id} was not deleted: {exc}", icon=":material/error:")
            return
        st.success(f"Deleted {entry.id}", icon=":material/check_circle:")
        st.rerun()


def add_form() -> None:
    """Upload a .keras file with its card (a JSON file, or the form's fields); validate and register."""
    st.subheader("Add a model")
    st.caption("A Keras 3 `.keras` file, loaded in safe mode (files with Lambda layers or other code are refused), "
               "with its card: upload the JSON, or fill in the form.")
    up = st.file_uploader("Model (.keras)", type=["keras"], key="models.add-model")
    card_file = st.file_uploader("Card (.json, optional)", type=["json"], key="models.add-card")
    with st.form("models.card-form"):
        name = st.text_input("Name", "my-model", key="models.name")
        classes = st.text_input("Class names (comma-separated, negative first)", "normal,abnormal",
                                key="models.classes")
        size = st.number_input("Input size (square)", 16, 1024, 224, key="models.size")
        channels = st.selectbox("Channels", [3, 1], key="models.channels")
        cam = st.text_input("CAM layer (last convolutional activation)", "", key="models.cam-layer")
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
        card = CardFields(name=name, class_names=CardFields.parse_classes(classes), input_size=int(size),
                          channels=int(channels or 3), cam_layer=cam, threshold=float(threshold), training_data=data)
    try:
        with st.spinner(f"Validating {up.name}…"):
            entry = register_upload(up.getvalue(), up.name, card, card_name=card_file.name if card_file else "the card")
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.success(f"Registered {entry.id}.", icon=":material/check_circle:")
    st.rerun()
