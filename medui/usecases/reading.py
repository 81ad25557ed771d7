"""Reading use case: open scans into the server's shared series store (shared by every page)."""

from __future__ import annotations

from collections.abc import Sequence

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require
from medui.io.budget import Budget
from medui.io.content import content_key, input_bytes
from medui.io.loader import LoadResult, load
from medui.io.pool import Workers
from medui.io.sources import Input, Limits
from medui.io.store import LoadRecord, OnWait, SeriesStore
from medui.series import Series

# What admission reserves per input byte before decoding (series are float32: twice int16 files);
# a load that needs more grows its share while memory is free (medui.io.store.StoreBudget).
RESERVE_PER_INPUT_BYTE = 2


def series_ids(series: Series, key: str = "") -> str:
    """How the audit trail names a series: 'study <StudyInstanceUID> series <SeriesInstanceUID>', or
    the content key for files without UIDs (NIfTI, PNG). Identifiers, never names."""
    if series.uid or series.study_uid:
        return f"study {series.study_uid or '-'} series {series.uid or '-'}"
    return f"content {key}" if key else f"{series.source_format} without UIDs"


def open_inputs(inputs: Sequence[Input], store: SeriesStore, workers: Workers | None = None,
                on_wait: OnWait | None = None, actor: Actor | None = None) -> LoadRecord:
    """Read `inputs` once per server: the keys of their series in `store` (decoded by this call, by
    an earlier one with the same content, or by one running now), the files skipped and why.

    Needs the 'viewer' permission; every series opened is recorded in the audit trail by its UIDs."""
    inputs = list(inputs)
    who = current(actor)

    def run(budget: Budget) -> LoadResult:
        return load(inputs, Limits(budget=budget, workers=workers))

    with audit.attempt(audit.OPEN_SERIES, who, details={"files": len(inputs)}) as step:
        require(who, "viewer", "opening scans")
        record = store.open(content_key(inputs), run, RESERVE_PER_INPUT_BYTE * input_bytes(inputs), on_wait)
        step.target = [_ids(store, k) for k in record.keys] or "nothing readable"
        step.details.update(series=len(record.keys), skipped=len(record.skipped), shared=record.from_cache)
    return record


def _ids(store: SeriesStore, key: str) -> str:
    if not store.has(key):
        return f"content {key}"
    series, _ = store.get(key)
    return series_ids(series, key)
