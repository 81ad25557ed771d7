"""Reading use case: open scans into the server's shared series store (shared by every page)."""

from __future__ import annotations

from collections.abc import Sequence

from medui.io.budget import Budget
from medui.io.content import content_key, input_bytes
from medui.io.loader import LoadResult, load
from medui.io.pool import Workers
from medui.io.sources import Input, Limits
from medui.io.store import LoadRecord, OnWait, SeriesStore

# What admission reserves per input byte before decoding (series are float32: twice int16 files);
# a load that needs more grows its share while memory is free (medui.io.store.StoreBudget).
RESERVE_PER_INPUT_BYTE = 2


def open_inputs(inputs: Sequence[Input], store: SeriesStore, workers: Workers | None = None,
                on_wait: OnWait | None = None) -> LoadRecord:
    """Read `inputs` once per server: the keys of their series in `store` (decoded by this call, by
    an earlier one with the same content, or by one running now), the files skipped and why."""
    inputs = list(inputs)

    def run(budget: Budget) -> LoadResult:
        return load(inputs, Limits(budget=budget, workers=workers))

    return store.open(content_key(inputs), run, RESERVE_PER_INPUT_BYTE * input_bytes(inputs), on_wait)
