"""The server-wide registry the viewer's HTTP routes read series from: `publish(series) -> token`,
`lookup(token) -> (series, volume) | None`.

Tokens are unguessable (a session's pixels are reachable only by whoever was given the token) and
the registry holds series by weak reference only: it never keeps a closed session's pixels alive.
"""

from __future__ import annotations

import secrets
import threading
import weakref

import streamlit as st

from medui.reading.volume import Volume, describe
from medui.series import Series


class Registry:
    """Series published to the browser, by token; weak references, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: weakref.WeakValueDictionary[str, Series] = weakref.WeakValueDictionary()
        self._volumes: dict[str, Volume] = {}
        self._tokens: dict[int, str] = {}  # id(series) -> token (Series is unhashable)

    def publish(self, series: Series) -> str:
        """The series' token, made (and its `Volume` described) the first time it is published."""
        with self._lock:
            token = self._tokens.get(id(series))
            if token is not None and self._series.get(token) is series:
                return token
        volume = describe(series)  # outside the lock: ~0.1 s for a 255-slice CT
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._series[token] = series
            self._volumes[token] = volume
            self._tokens[id(series)] = token
        weakref.finalize(series, self._forget, id(series), token)
        return token

    def _forget(self, key: int, token: str) -> None:
        with self._lock:
            self._volumes.pop(token, None)
            if self._tokens.get(key) == token:
                del self._tokens[key]

    def lookup(self, token: str) -> tuple[Series, Volume] | None:
        """The series and how it is sent; None once it is gone (closed session, cleared, unknown token)."""
        with self._lock:
            series = self._series.get(token)
            volume = self._volumes.get(token)
        if series is None or volume is None or series.pixels.shape[:3] != tuple(volume.meta["original_shape"]):
            return None  # 'Clear all' empties the pixels in place
        return series, volume

    def __len__(self) -> int:
        with self._lock:
            return len(self._series)


@st.cache_resource(show_spinner=False)
def registry() -> Registry:
    """The one registry of this server (read by the routes in `medui.ui.server`)."""
    return Registry()


def publish(series: Series) -> str:
    return registry().publish(series)


def lookup(token: str) -> tuple[Series, Volume] | None:
    return registry().lookup(token)
