"""Model loading for the pages: one read-only copy per model file and version, shared by sessions.

The cache lives here (Streamlit's `st.cache_resource`); the use cases know nothing of it. After a
use case deletes a model, `evict` drops its cached copy.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from medui.accounts.actor import Actor
from medui.ai.promotion import Status
from medui.ai.registry import Entry, list_models
from medui.usecases import models as usecase
from medui.usecases.diagnose import LoadedModel, load_model


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def cached_model(model_id: str, stamp: str, root: str | None = None) -> LoadedModel:
    """Keyed by the model's and its card's file times too (`_stamp`), so a replaced file or an
    edited card is reloaded, never served stale."""
    return load_model(model_id, Path(root) if root else None)


def registry(root: Path | None = None) -> list[Entry]:
    return list_models(root)


def _stamp(entry: Entry) -> str:
    """When the model file and its card last changed ('-' for a file that is gone)."""
    times = []
    for path in (entry.path, entry.path.with_suffix(".json")):
        times.append(str(path.stat().st_mtime_ns) if path.exists() else "-")
    return ":".join(times)


def statuses(root: Path | None = None) -> list[Status]:
    """Every registered model with its promotion status, read afresh on each run (promotions are
    small files another process may change; the models themselves are cached)."""
    return usecase.status(root)


def get(entry: Entry) -> LoadedModel:
    return cached_model(entry.id, _stamp(entry), str(entry.path.parent))


def evict(entry: Entry, stamp: str) -> None:
    """Drop the cached copy of a model (after its files were deleted)."""
    cached_model.clear(entry.id, stamp, str(entry.path.parent))


def delete(entry: Entry, user: str | None = None, actor: Actor | None = None) -> None:
    """Delete a registered model (the use case: administrators only; a promoted one loses its promotion) and
    drop its cached copy."""
    stamp = _stamp(entry)
    usecase.delete(entry.id, entry.path.parent, user=user, via="app", actor=actor)
    evict(entry, stamp)
