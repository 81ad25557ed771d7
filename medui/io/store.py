"""One server-wide, bounded store of decoded series, shared read-only by every session.

Sessions keep keys, the store keeps pixels. A load is keyed by its inputs' content
(`medui.io.content.content_key`), so two users opening the same study decode it once; a load
that is running is waited for, not repeated. Memory is bounded by a budget: loads reserve their
estimated size before they start (admission: they wait in line while other loads hold the budget,
and are refused when they alone exceed it), and what does not fit is spilled to disk, least
recently used first, and read back (with a note) when someone returns to it. A series that no
connected session has open is dropped `idle_seconds` after its last use (a sweeper thread does it),
so memory comes back after every session has closed without waiting for another visitor.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from medui.errors import LoadBudgetError, SeriesExpiredError
from medui.io.budget import Budget, MiB, available_bytes
from medui.io.loader import LoadResult
from medui.io.sources import Skipped
from medui.series import Series

DEFAULT_FRACTION = 0.4  # of the memory available when the server starts
DEFAULT_IDLE_S = 300.0
# Waiting loads report their place this often (seconds).
WAIT_POLL_S = 0.5

T = TypeVar("T")
OnWait = Callable[[int], None]  # called with the number of loads ahead while a load waits
# The keys that connected sessions have open (None: not known here, e.g. outside a server).
Pins = Callable[[], "set[str] | None"]


def _total_bytes() -> int:
    avail = available_bytes()
    return avail if avail else 8192 * MiB


@dataclass(frozen=True)
class StoreConfig:
    """Budget in bytes (MEDUI_CACHE_MB); how long a series no session has open is kept for the
    next user of the same study (MEDUI_CACHE_IDLE_S); where evicted pixels are spilled
    (MEDUI_CACHE_DIR; a private folder under the system's temporary folder by default)."""

    budget_bytes: int
    idle_seconds: float = DEFAULT_IDLE_S
    spill_dir: Path | None = None

    @classmethod
    def from_env(cls) -> StoreConfig:
        mb = os.environ.get("MEDUI_CACHE_MB")
        budget = int(float(mb) * MiB) if mb else int(_total_bytes() * DEFAULT_FRACTION)
        idle = float(os.environ.get("MEDUI_CACHE_IDLE_S", DEFAULT_IDLE_S))
        spill = os.environ.get("MEDUI_CACHE_DIR")
        return cls(max(budget, MiB), idle, Path(spill) if spill else None)


@dataclass
class LoadRecord:
    """What a load found: the keys of its series, the files it skipped, its summary line."""

    keys: list[str]
    skipped: list[Skipped]
    text: str
    seconds: float
    from_cache: bool = False

    def summary(self) -> str:
        """e.g. 'Loaded 1 series from 255 file(s) in 0.71 s' (as `LoadResult.summary`)."""
        return self.text + (" (already open on this server: not read again)" if self.from_cache else "")


@dataclass
class _Entry:
    series: Series | None  # None while spilled
    template: Series  # the series without its pixels (metadata for restoring)
    nbytes: int
    last_used: float
    spill: Path | None = None
    summary: str = ""  # the picker's line (Series.summary), readable without the pixels
    # Results computed from the series (a model's scores, saliency maps): (value, bytes) by name;
    # dropped with the series' pixels (they may hold them) and counted in its memory.
    derived: dict[Hashable, tuple[object, int]] = field(default_factory=dict)

    @property
    def resident(self) -> int:
        return (self.nbytes if self.series is not None else 0) + sum(n for _, n in self.derived.values())


@dataclass
class _Reservation:
    nbytes: int
    used: int = 0


class StoreBudget(Budget):
    """A load's share of the store: its reservation, grown from free memory when it needs more
    (never by waiting: a load that waited while holding bytes could wait forever)."""

    def __init__(self, store: SeriesStore, reservation: _Reservation) -> None:
        super().__init__(store.config.budget_bytes)
        self._store = store
        self._res = reservation

    @property
    def remaining(self) -> int:
        return max(self._res.nbytes - self.used, 0) + self._store.free_bytes()

    @property
    def full(self) -> bool:
        return self.remaining <= 0

    def charge(self, n: int, what: str) -> None:
        short = self.used + n - self._res.nbytes
        if short > 0 and not self._store.grow(self._res, short):
            raise LoadBudgetError(self.message(what, n))
        self.used += n
        self._res.used = self.used

    def release(self, n: int) -> None:
        super().release(n)
        self._res.used = self.used

    def message(self, what: str, n: int = 0) -> str:
        if n > self.limit:
            return (f"was not read: {what} needs {n / MiB:.0f} MiB, more than the server's memory for open "
                    f"series ({self.limit / MiB:.0f} MiB, MEDUI_CACHE_MB); ask the administrator to raise it")
        return (f"was not read: the server's memory for open series ({self.limit / MiB:.0f} MiB, MEDUI_CACHE_MB) "
                f"is in use by this and other readings ({what} needs {n / MiB:.1f} MiB more). The series read so "
                "far are kept; load the rest later or separately")


@dataclass
class SeriesStore:
    """The server's series (see the module docstring). Thread-safe; one per server."""

    config: StoreConfig
    _entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _loads: dict[str, LoadRecord] = field(default_factory=dict)
    _loading: dict[str, threading.Event] = field(default_factory=dict)
    _reserved: list[_Reservation] = field(default_factory=list)
    _queue: list[object] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=lambda: threading.Condition(threading.RLock()))
    _dir: Path | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    pins: Pins | None = None

    # -- accounting -------------------------------------------------------------------------------
    def resident_bytes(self) -> int:
        with self._lock:
            return sum(e.resident for e in self._entries.values())

    def _held(self) -> int:
        return self.resident_bytes() + sum(max(r.nbytes, r.used) for r in self._reserved)

    def free_bytes(self) -> int:
        """Bytes a load could still get now, spilling idle-most series first."""
        with self._lock:
            return max(self.config.budget_bytes - sum(max(r.nbytes, r.used) for r in self._reserved), 0)

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {"budget_mb": self.config.budget_bytes / MiB, "resident_mb": self.resident_bytes() / MiB,
                    "reserved_mb": sum(max(r.nbytes, r.used) for r in self._reserved) / MiB,
                    "series": len(self._entries), "spilled": sum(e.series is None for e in self._entries.values()),
                    "loads_waiting": len(self._queue)}

    def _make_room(self, need: int) -> bool:
        """Spill least recently used series until `need` more bytes fit; False if they cannot."""
        while self._held() + need > self.config.budget_bytes:
            victim = next((k for k, e in self._entries.items() if e.resident), None)
            if victim is None:
                return False
            self._spill(victim)
        return True

    def grow(self, res: _Reservation, n: int) -> bool:
        with self._lock:
            if not self._make_room(n):
                return False
            res.nbytes += n
            return True

    # -- admission ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admit(self, estimate: int, on_wait: OnWait | None = None) -> Iterator[StoreBudget]:
        """Reserve `estimate` bytes (at most the whole budget) for one load, waiting in line while
        other loads hold the budget; yields the load's budget. What the load reads past the budget
        is refused file by file with a message naming MEDUI_CACHE_MB (the loader keeps the rest)."""
        need = min(max(estimate, 0), self.config.budget_bytes)
        ticket = object()
        res = _Reservation(need)
        with self._lock:
            self._queue.append(ticket)
            try:
                while not (self._queue[0] is ticket and self._make_room(need)):
                    if on_wait is not None:
                        on_wait(self._queue.index(ticket) if self._queue[0] is not ticket else len(self._reserved))
                    self._lock.wait(WAIT_POLL_S)
                self._reserved.append(res)
            finally:
                self._queue.remove(ticket)
                self._lock.notify_all()
        try:
            yield StoreBudget(self, res)
        finally:
            with self._lock:
                self._reserved.remove(res)
                self._lock.notify_all()

    # -- loads ----------------------------------------------------------------------------------
    def open(self, key: str, run: Callable[[Budget], LoadResult], estimate: int,
             on_wait: OnWait | None = None) -> LoadRecord:
        """The series of the load `key`: from the store when it has them all (or another session
        is reading the same inputs right now: then its result), else `run(budget)` under admission."""
        while True:
            with self._lock:
                record = self._loads.get(key)
                if record is not None and all(k in self._entries for k in record.keys):
                    for k in record.keys:
                        self._entries[k].last_used = time.monotonic()
                    return dataclasses.replace(record, from_cache=True)
                running = self._loading.get(key)
                if running is None:
                    self._loading[key] = threading.Event()
                    break
            running.wait()
        try:
            with self.admit(estimate, on_wait) as budget:
                result = run(budget)
                return self.add(key, result)
        finally:
            with self._lock:
                self._loading.pop(key).set()

    def add(self, key: str, result: LoadResult) -> LoadRecord:
        """Keep the series of a finished load under the load key `key` (they become read-only)."""
        keys = []
        now = time.monotonic()
        with self._lock:
            for k, series in enumerate(result.series):
                series.pixels.flags.writeable = False  # shared by every session: read-only
                skey = f"{key[:32]}-{k}"
                template = dataclasses.replace(series, pixels=np.empty((0,), series.pixels.dtype))
                self._entries[skey] = _Entry(series, template, int(series.pixels.nbytes), now,
                                             summary=series.summary())
                self._entries.move_to_end(skey)
                keys.append(skey)
            record = LoadRecord(keys, list(result.skipped), result.summary(), result.seconds)
            self._loads[key] = record
            self._lock.notify_all()
        return record

    def summary(self, key: str) -> str:
        """The series' one-line summary without reading its pixels back ('' when it is gone)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.summary if entry is not None else ""

    def has(self, key: str) -> bool:
        """Whether the store still holds the series (in memory or spilled)."""
        with self._lock:
            return key in self._entries

    def get(self, key: str) -> tuple[Series, bool]:
        """The series (read back from disk if it was spilled: then True); SeriesExpiredError when the
        store dropped it after it went unused."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise SeriesExpiredError(
                    f"this series was closed to free the server's memory: no open page used it for "
                    f"{self.config.idle_seconds / 60:.0f} min (MEDUI_CACHE_IDLE_S); open it again")
            entry.last_used = time.monotonic()
            self._entries.move_to_end(key)
            if entry.series is not None:
                return entry.series, False
            if not self._make_room(entry.nbytes):
                raise LoadBudgetError("cannot be read back now: the server's memory for open series is held by "
                                      "loads in progress; try again in a moment")
            assert entry.spill is not None
            pixels = np.load(entry.spill, allow_pickle=False)
            pixels.flags.writeable = False
            entry.series = dataclasses.replace(entry.template, pixels=pixels)
            return entry.series, True

    def derived(self, key: str, name: Hashable, compute: Callable[[Series], T], nbytes: Callable[[T], int]) -> T:
        """A result computed from series `key` (e.g. a model's scores: `name` = the model's id),
        computed once and shared by every session; it counts in the budget and is dropped when the
        series is spilled or dropped. SeriesExpiredError when the series is gone."""
        series, _ = self.get(key)
        with self._lock:
            held = self._entries[key].derived.get(name)
        if held is not None:
            return held[0]  # type: ignore[return-value]
        value = compute(series)  # outside the lock: scoring a volume takes seconds
        size = int(nbytes(value))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.series is series:
                self._entries.move_to_end(key)  # fresh: not the first to spill when making room
                self._make_room(size)
                if self._entries.get(key) is entry and entry.series is series:
                    entry.derived[name] = (value, size)
        return value

    # -- eviction -------------------------------------------------------------------------------
    def _spill_dir(self) -> Path:
        if self._dir is None:
            base = self.config.spill_dir
            if base is not None:
                base.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._dir = Path(tempfile.mkdtemp(prefix="medui-series-", dir=base))
        return self._dir

    def _spill(self, key: str) -> None:
        entry = self._entries[key]
        entry.derived.clear()
        if entry.series is None:
            _trim()
            return
        if entry.spill is None:
            path = self._spill_dir() / f"{key}.npy"
            with open(path, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
                np.save(fh, entry.series.pixels, allow_pickle=False)
            entry.spill = path
        entry.series = None
        _trim()

    def sweep(self, now: float | None = None) -> int:
        """Drop the series no connected session has open (`pins`) and nobody has used for
        `idle_seconds`; returns how many. Open series only move to disk, under memory pressure."""
        now = time.monotonic() if now is None else now
        try:
            pinned = self.pins() if self.pins is not None else None
        except Exception:  # the server's session list could not be read: fall back to idle time alone
            pinned = None
        with self._lock:
            for k in pinned or ():
                if k in self._entries:
                    self._entries[k].last_used = max(self._entries[k].last_used, now)
            old = [k for k, e in self._entries.items() if now - e.last_used > self.config.idle_seconds]
            for k in old:
                entry = self._entries.pop(k)
                if entry.spill is not None:
                    entry.spill.unlink(missing_ok=True)
            for lk in [lk for lk, r in self._loads.items() if not any(k in self._entries for k in r.keys)]:
                del self._loads[lk]
        if old:
            _trim()
        return len(old)

    def start_sweeper(self, every_s: float | None = None) -> threading.Thread:
        """A daemon thread that sweeps until `close`."""
        period = every_s if every_s is not None else max(min(self.config.idle_seconds / 4, 60.0), 0.5)

        def loop() -> None:
            while not self._stop.wait(period):
                self.sweep()

        thread = threading.Thread(target=loop, name="medui-series-sweeper", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._entries.clear()
            self._loads.clear()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
        _trim()


def _trim() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
