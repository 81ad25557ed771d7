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


class WorkerPool:
    """A ProcessPoolExecutor of `ncpu` decode workers that can be killed and started again."""

    def __init__(self, ncpu: int, initializer: Callable[[], None], ready: Callable[[], int]) -> None:
        self.ncpu = ncpu
        self.crashes = 0
        self._initializer = initializer
        self._executor = self._new(ncpu)
        self._started: list[Future[int]] = [self._executor.submit(ready) for _ in range(ncpu)]

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=self._initializer)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._executor.submit(fn, *args)

    def up(self) -> bool:
        """Whether every worker has started."""
        return all(f.done() for f in self._started)

    def kill(self) -> None:
        """Kill the worker processes (one is stuck): the executor breaks."""
        processes: dict[int, Any] = getattr(self._executor, "_processes", None) or {}
        for proc in list(processes.values()):
            with contextlib.suppress(Exception):
                proc.kill()

    def restart(self, workers: int | None = None) -> bool:
        """A fresh executor after a crash or a kill; False once more than MAX_CRASHES have happened."""
        if self.crashes > MAX_CRASHES:
            return False
        old = self._executor
        try:
            self._executor = self._new(workers or self.ncpu)
        except Exception:  # could not start processes: the caller runs the rest itself
            return False
        old.shutdown(wait=False, cancel_futures=True)
        return True

    def isolate(self, remote: Callable[..., list[Any]], args: tuple[Any, ...], chunk: Sequence[Any],
                failure: Failure, timeout_s: float, too_slow: str) -> list[Any]:
        """Run a chunk whose worker died one item at a time in a single fresh worker: the item that
        kills it again gets `failure(item, CRASHED)`, the others their results. Past MAX_CRASHES the
        items left get `failure(item, GAVE_UP)` (never run in the caller's process)."""
        self.crashes += 1
        out: list[Any] = []
        for item in chunk:
            if not self.restart(workers=1):
                out.append(failure(item, GAVE_UP))
                continue
            try:
                out += self._executor.submit(remote, [item], *args).result(timeout=timeout_s or None)
                continue
            except TimeoutError:
                out.append(failure(item, too_slow))
                self.kill()
            except BrokenProcessPool:
                out.append(failure(item, CRASHED))
            except Exception as exc:  # the worker could not run it (pickling, a volume it cannot open)
                out.append(failure(item, f"could not be decoded in a worker process ({type(exc).__name__})"))
                continue
            self.crashes += 1
        self.restart()  # back to all workers for the chunks left (a single one when past the limit)
        return out

    def resubmit(self, futures: list[Future[Any]], chunks: Sequence[Sequence[Any]], start: int, stop: int,
                 remote: Callable[..., list[Any]], args: tuple[Any, ...]) -> None:
        """Send chunks start..stop whose jobs the broken executor lost to the current one."""
        for k in range(start, stop + 1):
            f = futures[k]
            if f.done() and not f.cancelled() and f.exception(timeout=0) is None:
                continue  # finished before the break: its result stands
            with contextlib.suppress(Exception):
                futures[k] = self._executor.submit(remote, chunks[k], *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
