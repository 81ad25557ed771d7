"""One retrieval over several associations at once: the instances, split into groups, each fetched by
its own association in a thread of its own (`medui.pacs.dimse.retrieve` for a node whose `parallel`
is above 1). Each C-STORE sub-operation is a round trip answered on `pynetdicom`'s thread of its
association, so K associations keep K of them in flight.

What the associations share is a `Gate`: `on_item` is called one instance at a time (whatever the
caller does with it need not be thread-safe), the count, and `halt`, set by the caller's cancel or
by the first error; an association that sees it refuses the next instance and aborts, and the ones
still open are aborted from the calling thread. An instance is never passed on after the cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pynetdicom.association import Association

from medui.pacs.part10 import part10

G = TypeVar("G")
REFUSED = 0xA700  # C-STORE status "refused: out of resources" (the retrieval was cancelled or failed)
POLL_S = 0.05  # how often the calling thread looks at the cancel while the associations run


class Gate:
    """What the associations of one retrieval share (also the one association of a plain C-GET, and the
    storage SCP of a C-MOVE: `stored` is every retrieval's C-STORE handler)."""

    def __init__(self, on_item: Callable[[str, bytes], None], cancel: threading.Event | None) -> None:
        self.on_item = on_item
        self.cancel = cancel
        self.halt = threading.Event()  # the cancel, or an error in one association: every association stops
        self.count = [0]  # instances passed on (a list: `medui.pacs.dimse._responses` reads it)
        self._lock = threading.Lock()
        self._open: list[Association] = []
        self.error: BaseException | None = None  # the first error (the later ones follow from aborting the rest)

    def stopped(self) -> bool:
        if self.cancel is not None and self.cancel.is_set():
            self.halt.set()
        return self.halt.is_set()

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if not self.halt.is_set():
                self.error = exc
            self.halt.set()

    def opened(self, assoc: Association) -> None:
        with self._lock:
            self._open.append(assoc)

    def abort_open(self) -> None:
        """Abort the associations still established (after `halt`)."""
        with self._lock:
            still = [a for a in self._open if a.is_established]
            self._open.clear()
        for assoc in still:
            assoc.abort()

    def stored(self, event: Any) -> int:
        """The C-STORE handler of every association: the instance to `on_item`, one at a time."""
        if self.stopped():
            return REFUSED
        request = event.request
        sop = str(request.AffectedSOPInstanceUID)
        data = part10(str(request.AffectedSOPClassUID), sop, str(event.context.transfer_syntax),
                      event.encoded_dataset(include_meta=False))
        name = f"{sop}.dcm"
        with self._lock:
            if self.stopped():  # cancelled while this one waited: it is not passed on
                return REFUSED
            self.on_item(name, data)
            self.count[0] += 1
        return 0x0000


def run(groups: Sequence[G], fetch: Callable[[G, Gate], None], on_item: Callable[[str, bytes], None],
        cancel: threading.Event | None = None) -> int:
    """`fetch(group, gate)` for each group, each in its own thread; the number of instances passed to
    `on_item`. The first error raised by a `fetch` is raised here, once every thread has ended (the
    others stop at once; what arrived before stays with the caller); a cancel ends them all."""
    gate = Gate(on_item, cancel)

    def work(group: G) -> None:
        if gate.stopped():
            return  # cancelled or failed before this association opened: it does not open
        try:
            fetch(group, gate)
        except BaseException as exc:  # raised again in the calling thread
            gate.fail(exc)

    threads = [threading.Thread(target=work, args=(group,), name=f"medui-cget-{k}", daemon=True)
               for k, group in enumerate(groups)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(POLL_S)
            if gate.stopped():
                gate.abort_open()
    if gate.error is not None:
        raise gate.error
    return gate.count[0]
