"""Model loading for the pages: one read-only copy per model file and version, shared by sessions."""

from __future__ import annotations

import streamlit as st

from medui.ai.registry import Entry, list_models
from medui.usecases.diagnose import load_model


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def cached_model(model_id: str, mtime: float, root: str | None = None):  # type: ignore[no-untyped-def]
    """(entry, predictor, explainer); keyed by file time too, so a replaced file is reloaded."""
    return load_model(model_id, root)


def registry(root: str | None = None) -> list[Entry]:
    return list_models(root)


def get(entry: Entry):  # type: ignore[no-untyped-def]
    return cached_model(entry.id, entry.path.stat().st_mtime, str(entry.path.parent))
