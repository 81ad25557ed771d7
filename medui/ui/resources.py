"""Server-wide resources, made once per server and shared read-only by every session: the series
store (decoded pixels, bounded by a memory budget) and the decode worker processes."""

from __future__ import annotations

import streamlit as st

from medui.io.parallel import shared_workers
from medui.io.pool import Workers
from medui.io.store import SeriesStore, StoreConfig


def _close(value: SeriesStore) -> None:
    value.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def store() -> SeriesStore:
    """The server's series store, with its sweeper thread (drops series unused for MEDUI_CACHE_IDLE_S)."""
    s = SeriesStore(StoreConfig.from_env())
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
