"""Per-session storage of loaded series (never shared between users) and cached resources."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import streamlit as st

from medui.io import LoadResult, Skipped, load
from medui.series import Series

_KEY = "medui.series"
_SKIPPED = "medui.skipped"
_SEEN = "medui.seen_uploads"


@dataclass
class Loaded:
    """A series in this session, with a stable id for widget keys."""

    series: Series
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    source: str = ""


def loaded() -> list[Loaded]:
    return st.session_state.setdefault(_KEY, [])


LAST_LOAD = "last-load-summary"


def last_load() -> str | None:
    """What the last read found and how long it took, e.g. for the Viewer's caption."""
    return st.session_state.get(LAST_LOAD)


def skipped() -> list[Skipped]:
    return st.session_state.setdefault(_SKIPPED, [])


def add_inputs(inputs: Iterable[Any], source: str) -> LoadResult:
    """Read inputs and append what was found; already loaded series stay whatever happens."""
    try:
        result = load(list(inputs))
    except Exception as exc:  # a reader bug must never take the session's data with it
        result = LoadResult([], [Skipped(source, f"could not be read: {type(exc).__name__}: {exc}")])
    loaded().extend(Loaded(s, source=source) for s in result.series)
    skipped().extend(result.skipped)
    st.session_state[LAST_LOAD] = result.summary()
    return result


def new_uploads(files: list[Any] | None, slot: str) -> list[Any]:
    """The uploaded files not yet read in this session (reruns must not load them twice)."""
    if not files:
        return []
    seen: set = st.session_state.setdefault(_SEEN, set())
    fresh = [f for f in files if (slot, f.file_id) not in seen]
    seen.update((slot, f.file_id) for f in fresh)
    return fresh


def clear() -> None:
    st.session_state[_KEY] = []
    st.session_state[_SKIPPED] = []
    st.session_state.pop(LAST_LOAD, None)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """The compute device, detected once per server (read-only)."""
    from medui.device import detect

    return detect().label()
