"""The body of a batch scoring job's process (`python -m medui batch-job FOLDER`).

Lists the source's studies into the database as queued, skips those already scored (a restarted job),
then fetches and decodes the next studies in a thread while the model scores the current one, and writes
each result in its own transaction as soon as it has it. A study that fails (corrupt, unsupported, PACS
error) is recorded with its reason and the job goes on. A `cancel` file stops it after the current study.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from medui.db import worklist as store
from medui.db.worklist import FAILED, SCORED, Outcome, StudyKey
from medui.errors import MedUIError
from medui.io.loader import LoadResult
from medui.training import jobs
from medui.usecases.batch import KIND
from medui.usecases.batch_sources import PacsSource, Source, prefetched, source_from
from medui.usecases.diagnose import LoadedModel, load_model


def study_score(model: LoadedModel, probabilities: dict[str, float]) -> float:
    """The one number the worklist sorts by: the positive class's probability (binary), else one minus
    the first (normal) class's."""
    names = list(model.entry.card.class_names)
    if model.entry.card.task == "binary":
        return float(probabilities[names[1]])
    return 1.0 - float(probabilities[names[0]])


def score_study(model: LoadedModel, key: StudyKey, loaded: LoadResult | str) -> Outcome:
    """Score every series of a loaded study (as `diagnose.score` does: prepare once, predict) and keep the
    highest-scoring one; a study without a series that scores is FAILED with the reason."""
    card = model.entry.card
    if isinstance(loaded, str):
        return Outcome(key, model.entry.id, FAILED, loaded)
    best: Outcome | None = None
    errors: list[str] = []
    for series in loaded.series:
        try:
            batch, _ = model.predictor.prepare(series)
            pred = model.predictor.predict_prepared(batch, series)
        except MedUIError as exc:
            errors.append(str(exc))
            continue
        value = study_score(model, pred.probabilities)
        flagged = value >= card.threshold if card.task == "binary" else pred.label != card.class_names[0]
        found = Outcome(StudyKey(key.study_uid, series.uid or key.series_uid,
                                 key.accession, key.modality or series.modality,
                                 key.study_date), model.entry.id, SCORED, "", value, pred.label, bool(flagged),
                        float(pred.threshold), {k: float(v) for k, v in pred.probabilities.items()},
                        None if pred.slice_scores is None else [float(s) for s in pred.slice_scores])
        if best is None or (found.score or 0.0) > (best.score or 0.0):
            best = found
    if best is not None:
        return best
    reasons = errors + [s.reason for s in loaded.skipped]  # never the file names: they may name a patient
    return Outcome(key, model.entry.id, FAILED, "; ".join(reasons)[:2000] or "no image series in the study")


PAUSE_VARIABLE = "MEDUI_TEST_PAUSE_AT"
PROGRESS_S = 0.5  # seconds between progress updates of the job's row and status.json


def _pause_point(job: jobs.Job, written: int) -> None:
    """Tests only: with MEDUI_TEST_PAUSE_AT=batch-study-<n>:<marker file>, after the n-th study written this
    run, create the marker and wait until the job is cancelled (or killed); unset (always, outside tests),
    do nothing."""
    wanted, _, marker = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if wanted != f"batch-study-{written}" or not marker:
        return
    Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + 600
    while not job.cancel_requested and time.monotonic() < deadline:
        time.sleep(0.05)


def _send_results(source: PacsSource, model: LoadedModel, outcome: Outcome) -> int:
    """Build the SR/SEG/SC/PDF of a flagged study's scored series and store them on the source's PACS;
    1 when sent, 0 (and a log line) when they could not be."""
    from medui.usecases import results

    uid = outcome.key.study_uid
    try:
        scored, _ = results.report(source.inputs(uid), model)
        made = next((s for s in scored if s.series.uid == outcome.key.series_uid), scored[0] if scored else None)
        if made is None or made.results is None:
            raise MedUIError(made.error if made else "no series to report on")
        results.send(made.results, source.node_obj(), source.using)
    except MedUIError as exc:
        print(f"results of {uid} not sent: {exc}", flush=True)
        return 0
    print(f"results of {uid} sent to the PACS", flush=True)
    return 1


def _status(job: jobs.Job, **values: Any) -> None:
    try:
        st = {**job.status(), **values}
    except OSError:
        st = dict(values)
    jobs.write_json(job.path / "status.json", st)


def run(folder: str | Path) -> int:
    """Run the job in `folder` to its end; 0 done, 1 failed, 2 cancelled."""
    job = jobs.Job(Path(folder).resolve())
    pid = os.getpid()
    _status(job, state="running", pid=pid, pid_start=jobs.process_start(pid), started=time.time())
    store.save_job(job.id, KIND, state="running", message="")
    try:
        return _run(job)
    except Exception as exc:  # the job's own failure: recorded where every page sees it
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        _status(job, state="failed", error=message)
        store.save_job(job.id, KIND, state="failed", message=message[:2000], eta_s=None)
        return 1


def _run(job: jobs.Job) -> int:
    from medui.training import runner

    params = job.params()
    on_ray = runner.record(job.path)["backend"] == runner.RAY
    model = None if on_ray else load_model(params["model"])  # on Ray the tasks load it
    model_id = model.entry.id if model is not None else _registered(params["model"])
    source = source_from(params)
    keys = source.studies()[: int(params.get("limit") or 200)]
    total = store.queue(job.id, model_id, keys)
    done_before = store.scored_uids(job.id)
    todo = [k for k in keys if k.study_uid not in done_before]
    counts = store.counts(job.id)
    store.save_job(job.id, KIND, total=total, done=counts[SCORED], failed=0)
    print(f"{total} studies, {len(done_before)} already scored, {len(todo)} to do with {model_id}"
          + (" on the Ray cluster" if on_ray else ""), flush=True)
    started = time.perf_counter()
    if model is None:
        from medui.usecases import batch_ray

        def progress(scored: int, failed: int) -> None:
            rate = (time.perf_counter() - started) / max(scored + failed - len(done_before), 1)
            eta = rate * (total - scored - failed)
            store.save_job(job.id, KIND, done=scored, failed=failed, eta_s=eta)
            _status(job, progress={"done": scored + failed, "total": total}, eta_s=eta)

        n, failed, sent, cancelled = batch_ray.run(job, params, source, todo, progress, PROGRESS_S)
    else:
        n, failed, sent, cancelled = _run_local(job, params, model, source, todo, total, len(done_before))
    state = "cancelled" if cancelled else "done"
    seconds = time.perf_counter() - started
    message = f"{n} studies processed in {seconds:.1f} s, {failed} failed"
    if params.get("send"):
        message += f", results of {sent} flagged studies sent to the PACS"
    print(f"{state}: {message}", flush=True)
    _status(job, state=state, eta_s=None, message=message, seconds=round(seconds, 3), processed=n)
    store.save_job(job.id, KIND, state=state, eta_s=None, message=message)
    sys.stdout.flush()
    return 2 if cancelled else 0


def _registered(name: str) -> str:
    from medui.ai.registry import find

    return find(name).id


def _run_local(job: jobs.Job, params: dict[str, Any], model: LoadedModel, source: Source, todo: list[StudyKey],
               total: int, before: int) -> tuple[int, int, int, bool]:
    """Score `todo` in this process, decoding ahead in a thread; (processed, failed, sent, cancelled)."""
    started, n, failed, cancelled, shown, sent = time.perf_counter(), 0, 0, False, 0.0, 0
    for key, loaded in prefetched(source, todo):
        if job.cancel_requested:
            cancelled = True
            break
        outcome = score_study(model, key, loaded)
        store.write(job.id, outcome)
        if params.get("send") and outcome.flagged and isinstance(source, PacsSource):
            sent += _send_results(source, model, outcome)
        n += 1
        failed += outcome.status == FAILED
        rate = (time.perf_counter() - started) / n
        eta = rate * (len(todo) - n)
        print(f"[{n}/{len(todo)}] {outcome.status} {key.study_uid}"
              + (f" score {outcome.score:.4f}" if outcome.score is not None else f": {outcome.reason[:200]}"),
              flush=True)
        if time.perf_counter() - shown > PROGRESS_S or n == len(todo):  # each result is written at once (above),
            shown = time.perf_counter()  # the progress and ETA at most every PROGRESS_S
            store.save_job(job.id, KIND, done=before + n - failed, failed=failed, eta_s=eta)
            _status(job, progress={"done": before + n, "total": total}, eta_s=eta)
        _pause_point(job, n)
    return n, failed, sent, cancelled or job.cancel_requested and n < len(todo)
