"""Worker processes for decoding that start fast and never run the main script.

Processes come from a forkserver (safe to start from a threaded server; after the first one, a
worker starts in ~10 ms with pydicom and the decoders already imported). Python's spawn machinery
makes every such process re-run the parent's main script as `__mp_main__` first, so that functions
defined there can be unpickled. MedUI's workers only run `medui` functions, and the main script is
whatever started the server: Streamlit installs `app.py` or, under `AppTest`, a page script as
`__main__`, and running those in a worker builds the app and imports TensorFlow (3.2 s per upload
instead of 0.7 s). So the processes started here are told nothing about the main script.

That needs one private hook of `multiprocessing`: `_Popen._launch` below is CPython 3.11's
forkserver `Popen._launch` minus the main-script keys. It is used only on 3.11-3.13 and only when
this Python's `_launch` has the same shape; elsewhere `context()` returns the plain forkserver
context and the workers behave as multiprocessing documents (app.py is inert as `__mp_main__`).
"""

from __future__ import annotations

import functools
import io
import multiprocessing as mp
import os
from typing import Any

try:
    from multiprocessing import context as mpc
    from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util

    HAVE_FORKSERVER = True
except ImportError:  # no forkserver on this platform (Windows): MedUI decodes in one process there
    HAVE_FORKSERVER = False

PRELOAD = ["medui.io.parallel"]
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


if HAVE_FORKSERVER:  # classes at module level: the process object is pickled by reference

    class _Popen(popen_forkserver.Popen):
        """A forkserver Popen whose child is told nothing about the parent's main script."""

        def _launch(self, process_obj: Any) -> None:  # popen_forkserver.Popen._launch, minus main
            prep_data = spawn.get_preparation_data(process_obj._name)
            for key in _MAIN_KEYS:
                prep_data.pop(key, None)
            buf = io.BytesIO()
            mpc.set_spawning_popen(self)
            try:
                reduction.dump(prep_data, buf)
                reduction.dump(process_obj, buf)
            finally:
                mpc.set_spawning_popen(None)
            self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
            _parent_w = os.dup(w)
            self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = forkserver.read_signed(self.sentinel)

    class WorkerProcess(mpc.ForkServerProcess):
        """Pickled by reference into each child, so it lives at module level."""

        @staticmethod
        def _Popen(process_obj: Any) -> _Popen:
            return _Popen(process_obj)

    class _WorkerContext(mpc.ForkServerContext):
        Process = WorkerProcess


@functools.cache
def _fits_this_python() -> bool:
    """The hook copies CPython 3.11's `_launch`: use it only where this Python's has that shape."""
    import inspect
    import sys

    if not HAVE_FORKSERVER:
        return False
    try:
        source = inspect.getsource(popen_forkserver.Popen._launch)  # type: ignore[attr-defined]
    except (OSError, TypeError, AttributeError):
        return False
    return ((3, 11) <= sys.version_info[:2] <= (3, 13) and "spawn.get_preparation_data" in source
            and "_parent_w = os.dup(w)" in source and "read_signed" in source
            and hasattr(forkserver, "connect_to_new_process") and hasattr(forkserver, "read_signed"))


def context() -> mp.context.BaseContext:
    """The multiprocessing context for decode workers (forkserver, preloading the decoders)."""
    ctx = _WorkerContext() if _fits_this_python() else mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx
