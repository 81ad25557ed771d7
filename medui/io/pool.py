"""Decode worker processes that survive a file which kills or hangs one of them.

A native decoder that crashes (a segfault, an abort) takes its worker process down, and the
executor then fails every queued job. `WorkerPool` starts a fresh executor instead, re-runs the
chunk that was running one file at a time in a single worker (so the file that crashes it is
found and only that one is reported), and sends the other chunks to the new workers. The same
happens after a stuck worker is killed for running past its time limit. After `MAX_CRASHES`
such events the caller falls back to running what is left in its own process, as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from medui.io.workers import context as worker_context

MAX_CRASHES = 3
CRASHED = ("stopped the decoder process reading it (a crash in a native decoder: a damaged or hostile "
           "file); the other files were read. Re-export it, or convert it to uncompressed DICOM")

GAVE_UP = ("was not read: decoder processes crashed or got stuck on files of this upload too often; load "
           "this file separately")
# what a failed item becomes: failure(item, reason)
Failure = Callable[[Any, str], Any]


class Workers:
    """A ProcessPoolExecutor of `ncpu` decode workers that can be killed and started again, and
    shared by every load of a server (thread-safe). A break is repaired once: whoever notices
    it first restarts the executor; the others see a newer generation and resubmit to it."""

    def __init__(self, ncpu: int, initializer: Callable[[], None], ready: Callable[[], int]) -> None:
        self.ncpu = ncpu
        self.generation = 0
        self._lock = threading.Lock()
        self._initializer = initializer
        self._ready = ready
        self._executor = self._new(ncpu)
        self._started: list[Future[int]] = [self._executor.submit(ready) for _ in range(ncpu)]

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=self._initializer)

    def submit(self, fn: Callable[..., Any], *args: Any) -> tuple[Future[Any], int]:
        """The job's future and the generation of the executor that runs it."""
        with self._lock:
            return self._executor.submit(fn, *args), self.generation

    def up(self) -> bool:
        """Whether every worker has started."""
        return all(f.done() for f in self._started)

    def kill(self, generation: int) -> None:
        """Kill the worker processes of that generation (one is stuck): its executor breaks."""
        with self._lock:
            if generation != self.generation:
                return
            processes: dict[int, Any] = getattr(self._executor, "_processes", None) or {}
            for proc in list(processes.values()):
                with contextlib.suppress(Exception):
                    proc.kill()

    def restart(self, generation: int) -> bool:
        """A fresh executor after the one of `generation` broke (nothing to do if another load
        already replaced it); False if no processes can be started."""
        with self._lock:
            if generation != self.generation:
                return True
            old = self._executor
            try:
                self._executor = self._new(self.ncpu)
            except Exception:  # could not start processes: the caller runs the rest itself
                return False
            self._started = [self._executor.submit(self._ready) for _ in range(self.ncpu)]
            self.generation += 1
        old.shutdown(wait=False, cancel_futures=True)
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)


class WorkerPool:
    """One load's use of decode workers: its own executor, or a server's shared `Workers`. It
    counts its own crashes (a hostile upload gives up on itself, never on the server's pool)."""

    def __init__(self, ncpu: int, initializer: Callable[[], None], ready: Callable[[], int],
                 shared: Workers | None = None) -> None:
        self.ncpu = shared.ncpu if shared is not None else ncpu
        self.crashes = 0
        self._initializer = initializer
        self._ready = ready
        self._owned = shared is None
        self._workers = shared if shared is not None else Workers(ncpu, initializer, ready)
        self._generation = self._workers.generation

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future, self._generation = self._workers.submit(fn, *args)
        return future

    def up(self) -> bool:
        return self._workers.up()

    def kill(self) -> None:
        self._workers.kill(self._generation)

    def restart(self) -> bool:
        """Working workers again after a crash or a kill; False past MAX_CRASHES of this load."""
        if self.crashes > MAX_CRASHES:
            return False
        if not self._workers.restart(self._generation):
            return False
        self._generation = self._workers.generation
        return True

    def isolate(self, remote: Callable[..., list[Any]], args: tuple[Any, ...], chunk: Sequence[Any],
                failure: Failure, timeout_s: float, too_slow: str) -> list[Any]:
        """Run a chunk whose worker died one item at a time in a private one-worker executor: the
        item that kills it again gets `failure(item, CRASHED)`, the others their results. Past
        MAX_CRASHES the items left get `failure(item, GAVE_UP)` (never run in the caller's process)."""
        self.crashes += 1
        self.restart()  # the shared executor, for the chunks left
        out: list[Any] = []
        single: Workers | None = None
        for item in chunk:
            if self.crashes > MAX_CRASHES:
                out.append(failure(item, GAVE_UP))
                continue
            try:
                single = single or Workers(1, self._initializer, self._ready)
            except Exception:
                out.append(failure(item, GAVE_UP))
                continue
            try:
                future, _ = single.submit(remote, [item], *args)
                out += future.result(timeout=timeout_s or None)
                continue
            except TimeoutError:
                out.append(failure(item, too_slow))
                single.kill(single.generation)
            except BrokenProcessPool:
                out.append(failure(item, CRASHED))
            except Exception as exc:  # the worker could not run it (pickling, a volume it cannot open)
                out.append(failure(item, f"could not be decoded in a worker process ({type(exc).__name__})"))
                continue
            self.crashes += 1
            single.shutdown()
            single = None
        if single is not None:
            single.shutdown()
        return out

    def resubmit(self, futures: list[Future[Any]], chunks: Sequence[Sequence[Any]], start: int, stop: int,
                 remote: Callable[..., list[Any]], args: tuple[Any, ...]) -> None:
        """Send chunks start..stop whose jobs the broken executor lost to the current one."""
        for k in range(start, stop + 1):
            f = futures[k]
            if f.done() and not f.cancelled() and f.exception(timeout=0) is None:
                continue  # finished before the break: its result stands
            with contextlib.suppress(Exception):
                futures[k] = self.submit(remote, chunks[k], *args)

    def shutdown(self) -> None:
        """Stop this load's own workers (a shared pool stays up for the server)."""
        if self._owned:
            self._workers.shutdown()
