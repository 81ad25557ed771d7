"""Models page: the registry, model cards and metrics; add (validated), download and delete models."""

import json
import tempfile
from pathlib import Path

import streamlit as st

from medui.errors import MedUIError
from medui.ai.card import ModelCard, Preprocessing
from medui.ai.registry import delete, load_keras, next_version, register
from medui.ui import modelcache
from medui.ui.shell import ensure_navigation

ensure_navigation()  # before anything renders

st.title("Models")
entries = modelcache.registry()
if entries:
    st.dataframe([{"model": e.id, "architecture": e.card.architecture, "classes": " / ".join(e.card.class_names),
                   "threshold": round(e.card.threshold, 3), "AUC": e.card.metrics.get("auc"),
                   "created": e.card.created, "parent": e.card.parent or "", "demo": e.card.demo} for e in entries],
                 hide_index=True, width="stretch")
    ids = [e.id for e in entries]
    chosen = st.selectbox("Model card", ids, key="models-choice")
    entry = entries[ids.index(chosen)]
    card = entry.card
    if card.demo:
        st.info("This is the demonstration model, trained on synthetic phantoms only.", icon="🧪")
    st.markdown(f"**Intended use.** {card.intended_use}  \n**Limitations.** {card.limitations or '—'}  \n"
                f"**Trained on.** {json.dumps(card.training_data)}  \n**Threshold.** {card.threshold:.3f} — "
                f"{card.threshold_method}")
    if card.metrics:
        st.json(card.metrics, expanded=False)
    with st.expander("Full card (JSON)"):
        st.json(card.to_json())
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download .keras", entry.path.read_bytes(), file_name=entry.path.name, key="dl-model")
    c2.download_button("Download card", json.dumps(card.to_json(), indent=2), file_name=f"{card.id}.json",
                       key="dl-card")
    if not card.demo and c3.button("Delete", key="del-model", type="secondary"):
        delete(entry.id)
        st.success(f"Deleted {entry.id}")
        st.rerun()
else:
    st.info("No models yet. Train the demo model (`python -m medui demo-model`) or add one below.")

st.subheader("Add a model")
st.caption("A Keras 3 `.keras` file, loaded in safe mode (files with Lambda layers or other code are refused), "
           "with its card: upload the JSON, or fill in the form.")
up = st.file_uploader("Model (.keras)", type=["keras"], key="add-model")
card_file = st.file_uploader("Card (.json, optional)", type=["json"], key="add-card")
with st.form("card-form"):
    name = st.text_input("Name", "my-model")
    classes = st.text_input("Class names (comma-separated, negative first)", "normal,abnormal")
    size = st.number_input("Input size (square)", 16, 1024, 224)
    channels = st.selectbox("Channels", [3, 1])
    cam = st.text_input("CAM layer (last convolutional activation)", "")
    threshold = st.number_input("Decision threshold", 0.001, 0.999, 0.5)
    data = st.text_area("What was it trained on?", "")
    submitted = st.form_submit_button("Validate and register", type="primary")
if submitted:
    if up is None:
        st.error("Choose a .keras file first.")
    else:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "upload.keras"
                path.write_bytes(up.getvalue())
                if card_file is not None:
                    card = ModelCard.from_json(json.loads(card_file.getvalue()))
                else:
                    names = [c.strip() for c in classes.split(",") if c.strip()]
                    model = load_keras(path)
                    card = ModelCard(name=name, version=next_version(name), class_names=names,
                                     input_size=[int(size), int(size)], channels=int(channels), architecture="uploaded",
                                     cam_layer=cam.strip(), preprocessing=Preprocessing(),
                                     task="binary" if len(names) == 2 else "multiclass", threshold=float(threshold),
                                     threshold_method="given by the user at upload", training_data={"source": data})
                    del model
                entry = register(path, card)
            st.success(f"Registered {entry.id}.")
            st.rerun()
        except (MedUIError, ValueError) as exc:
            st.error(str(exc))
