"""Per-session storage of loaded series (never shared between users) and cached resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from medui.io.loader import LoadResult, load
from medui.io.sources import Skipped
from medui.series import Series


def _unpin_script_module() -> None:
    """The first `import multiprocessing` in a process aliases sys.modules['__mp_main__'] to the
    `__main__` of that moment. Under Streamlit that is the module of the script run that first
    imported MedUI (its decoder imports multiprocessing), and that module's globals hold a
    session's series: hundreds of MB kept until the server stops. Point the alias at an empty
    module (MedUI's workers never use it: medui.io.workers)."""
    import sys
    import types

    main, alias = sys.modules.get("__main__"), sys.modules.get("__mp_main__")
    if alias is not None and alias is main and getattr(main, "__spec__", None) is None:
        sys.modules["__mp_main__"] = types.ModuleType("__mp_main__")


_unpin_script_module()

_KEY = "medui.series"
_SKIPPED = "medui.skipped"
_SEEN = "medui.seen_uploads"
# Results derived from the loaded series (they keep the series alive): dropped with them.
DIAGNOSES = "dx.diagnoses"
SALIENCY = "dx.saliency"


@dataclass
class Loaded:
    """A series in this session, with a stable id for widget keys."""

    series: Series
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    source: str = ""
    thumb: np.ndarray | None = None  # the series picker's thumbnail, made once


def loaded() -> list[Loaded]:
    items: list[Loaded] = st.session_state.setdefault(_KEY, [])
    return items


def find(item_id: str) -> Loaded | None:
    """A loaded series by its id. Widgets and fragments get ids, never the series: Streamlit keeps
    callback arguments (and a fragment's arguments) after the series is cleared, which would keep
    its pixels (hundreds of MB) alive for the rest of the session."""
    return next((item for item in loaded() if item.id == item_id), None)


LAST_LOAD = "medui.last-load"


def last_load() -> str | None:
    """What the last read found and how long it took, e.g. for the Viewer's caption."""
    return st.session_state.get(LAST_LOAD)


def skipped() -> list[Skipped]:
    items: list[Skipped] = st.session_state.setdefault(_SKIPPED, [])
    return items


def add_inputs(inputs: Iterable[Any], source: str) -> LoadResult:
    """Read inputs and append what was found; already loaded series stay whatever happens."""
    try:
        result = load(list(inputs))
    except Exception as exc:  # a reader bug must never take the session's data with it
        result = LoadResult([], [Skipped(source, f"could not be read: {type(exc).__name__}: {exc}")])
    # New lists, not in-place: a stale reference to the old list (a finished script run's globals)
    # must not see, and keep alive, the new series.
    st.session_state[_KEY] = loaded() + [Loaded(s, source=source) for s in result.series]
    st.session_state[_SKIPPED] = skipped() + result.skipped
    st.session_state[LAST_LOAD] = result.summary()
    return result


def new_uploads(files: list[Any] | None, slot: str) -> list[Any]:
    """The uploaded files not yet read in this session (reruns must not load them twice)."""
    if not files:
        return []
    seen: set[tuple[str, str]] = st.session_state.setdefault(_SEEN, set())
    fresh = [f for f in files if (slot, f.file_id) not in seen]
    seen.update((slot, f.file_id) for f in fresh)
    return fresh


def clear() -> None:
    """Forget this session's series and free their pixels now.

    Streamlit keeps the previous run's session state until the session's next run, so without
    the explicit release a cleared 255-slice CT (260 MB) stays in memory until the user clicks
    something else."""
    for item in loaded():
        px = item.series.pixels
        item.series.pixels = np.empty((0,) + px.shape[1:], px.dtype)  # not a view: that would keep the buffer
    st.session_state[_KEY] = []
    st.session_state[_SKIPPED] = []
    for key in (LAST_LOAD, DIAGNOSES, SALIENCY):
        st.session_state.pop(key, None)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """The compute device, detected once per server (read-only)."""
    from medui.ai.device import detect

    return detect().label()
