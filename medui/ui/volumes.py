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
        self._keys: dict[str, str] = {}  # token -> the series' key in the server's store, when it has one

    def publish(self, series: Series, key: str | None = None) -> str:
        """The series' token, made (and its `Volume` described) the first time it is published. With
        the series' `key` in the server's store, a series the store moved to disk meanwhile is read
        back when the browser asks for it, instead of being gone."""
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
            if key is not None:
                self._keys[token] = key
        weakref.finalize(series, self._forget, id(series), token)
        return token

    def _forget(self, key: int, token: str) -> None:
        with self._lock:
            if token not in self._keys:
                self._volumes.pop(token, None)
            if self._tokens.get(key) == token:
                del self._tokens[key]

    def lookup(self, token: str) -> tuple[Series, Volume] | None:
        """The series and how it is sent; None once it is gone (closed session, cleared, unknown token)."""
        with self._lock:
            series = self._series.get(token)
            volume = self._volumes.get(token)
            key = self._keys.get(token)
        if series is None and volume is not None and key is not None:
            series = self._restore(token, key)
        if series is None or volume is None or series.pixels.shape[:3] != tuple(volume.meta["original_shape"]):
            return None  # 'Clear all' empties the pixels in place
        return series, volume

    def _restore(self, token: str, key: str) -> Series | None:
        """The series of `key` from the server's store (read back from disk if it was moved there)."""
        from medui.errors import MedUIError
        from medui.ui import resources

        try:
            series, _ = resources.store().get(key)
        except MedUIError:  # dropped by the store: the page says so on its next run
            with self._lock:
                self._keys.pop(token, None)
                self._volumes.pop(token, None)
            return None
        with self._lock:
            self._series[token] = series
        return series

    def __len__(self) -> int:
        with self._lock:
            return len(self._series)


@st.cache_resource(show_spinner=False)
def registry() -> Registry:
    """The one registry of this server (read by the routes in `medui.ui.server`)."""
    return Registry()


def publish(series: Series, key: str | None = None) -> str:
    return registry().publish(series, key)


def lookup(token: str) -> tuple[Series, Volume] | None:
    return registry().lookup(token)
