"""Server-wide resources, made once per server and shared read-only by every session: the series
store (decoded pixels, bounded by a memory budget) and the decode worker processes."""

from __future__ import annotations

import streamlit as st

from medui.io.parallel import shared_workers
from medui.io.pool import Workers
from medui.io.store import SeriesStore, StoreConfig

SERIES_KEY = "medui.series"  # the session-state list of a session's open series (medui.ui.state)


def open_keys() -> set[str] | None:
    """The store keys that connected sessions have open; None where Streamlit's session list cannot
    be read (no server runtime, as under AppTest, or an internal change in a later Streamlit)."""
    try:
        from streamlit.runtime import Runtime

        sessions = Runtime.instance()._session_mgr.list_active_sessions()
        keys: set[str] = set()
        for info in sessions:
            state = info.session.session_state
            if SERIES_KEY in state:
                keys.update(item.key for item in state[SERIES_KEY])
        return keys
    except Exception:
        return None


def _close(value: SeriesStore) -> None:
    value.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def store() -> SeriesStore:
    """The server's series store, with its sweeper thread (drops series no connected session has
    open, MEDUI_CACHE_IDLE_S after their last use)."""
    s = SeriesStore(StoreConfig.from_env(), pins=open_keys)
    s.start_sweeper()
    return s


def _stop(value: Workers | None) -> None:
    if value is not None:
        value.shutdown()


@st.cache_resource(show_spinner=False, on_release=_stop)
def workers() -> Workers | None:
    """One pool of decode processes for every session's loads (None where processes cannot start)."""
    try:
        return shared_workers()
    except Exception:  # no process support here: every load decodes in the server process
        return None
