"""What a session has open: keys into the server's shared series store (`medui.ui.resources`),
never the pixels themselves, so a closed session holds no volumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from medui.errors import MedUIError, SeriesExpiredError
from medui.io.sources import Skipped
from medui.io.store import LoadRecord
from medui.series import Series
from medui.ui import resources
from medui.usecases.reading import open_inputs


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

_KEY = resources.SERIES_KEY
_SKIPPED = "medui.skipped"
_SEEN = "medui.seen_uploads"
# Results derived from the loaded series (they keep the series alive): dropped with them.
DIAGNOSES = "dx.diagnoses"
SALIENCY = "dx.saliency"


@dataclass
class Loaded:
    """A series open in this session: its key in the server's store and a stable id for widget keys."""

    key: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    source: str = ""
    thumb: np.ndarray | None = None  # the series picker's thumbnail, made once

    @property
    def series(self) -> Series:
        """The series (read-only, shared); read back from the server's disk cache with a note when
        it was moved out of memory. Do not keep it in session state: keep the item."""
        series, restored = resources.store().get(self.key)
        if restored:
            st.toast("A series moved out of memory while unused was read back from the server's disk cache.",
                     icon=":material/history:")
        return series

    @property
    def summary(self) -> str:
        """The picker's line for this series, without reading back pixels moved out of memory."""
        return resources.store().summary(self.key)


def loaded() -> list[Loaded]:
    """This session's series; those the server dropped after long disuse are removed, with a note."""
    items: list[Loaded] = st.session_state.setdefault(_KEY, [])
    store = resources.store()
    live = [item for item in items if store.has(item.key)]
    if len(live) != len(items):
        gone = len(items) - len(live)
        st.session_state[_KEY] = live
        st.session_state[_SKIPPED] = skipped() + [Skipped(f"{gone} series", str(SeriesExpiredError(
            f"closed to free the server's memory: no open page used them for {store.config.idle_seconds / 60:.0f} "
            "min (MEDUI_CACHE_IDLE_S); open them again")))]
    return live


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


def add_inputs(inputs: Iterable[Any], source: str) -> LoadRecord:
    """Read inputs into the server's store and open what was found; already loaded series stay
    whatever happens. While other loads hold the server's memory, the place in line is shown."""
    line = st.empty()

    def waiting(ahead: int) -> None:
        line.info(f"Waiting for memory: {ahead} series load(s) before yours on this server.",
                  icon=":material/hourglass_top:")

    try:
        record = open_inputs(list(inputs), resources.store(), resources.workers(), on_wait=waiting)
    except MedUIError as exc:  # refused at admission: it alone exceeds the server's budget
        record = LoadRecord([], [Skipped(source, str(exc))], f"Not loaded: {exc}", 0.0)
    except Exception as exc:  # a reader bug must never take the session's data with it
        record = LoadRecord([], [Skipped(source, f"could not be read: {type(exc).__name__}: {exc}")],
                            "Not loaded", 0.0)
    line.empty()
    _release_uploads()
    # New lists, not in-place: a stale reference to the old list (a finished script run's globals)
    # must not see, and keep alive, the new series.
    st.session_state[_KEY] = loaded() + [Loaded(key, source=source) for key in record.keys]
    st.session_state[_SKIPPED] = skipped() + record.skipped
    st.session_state[LAST_LOAD] = record.summary()
    return record


def new_uploads(files: list[Any] | None, slot: str) -> list[Any]:
    """The uploaded files not yet read in this session (reruns must not load them twice)."""
    if not files:
        return []
    seen: set[tuple[str, str]] = st.session_state.setdefault(_SEEN, set())
    fresh = [f for f in files if (slot, f.file_id) not in seen]
    seen.update((slot, f.file_id) for f in fresh)
    return fresh


def _release_uploads() -> None:
    """Free the bytes of the uploads this session has read. Streamlit keeps uploaded files until the
    session ends, and a closed tab's session ends only when Streamlit next prunes disconnected
    sessions (often when another visitor's session ends): a 255-file CT kept 130 MB per closed tab."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return
    remove = getattr(Runtime.instance().uploaded_file_mgr, "remove_file", None)
    if remove is None:  # another uploaded-file manager: its files live until the session ends
        return
    for _slot, file_id in st.session_state.get(_SEEN, set()):
        remove(ctx.session_id, file_id)


def clear() -> None:
    """Close this session's series (the server's store drops them once nobody uses them)."""
    st.session_state[_KEY] = []
    st.session_state[_SKIPPED] = []
    for key in (LAST_LOAD, DIAGNOSES, SALIENCY):
        st.session_state.pop(key, None)


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """The compute device, detected once per server (read-only)."""
    from medui.ai.device import detect

    return detect().label()
