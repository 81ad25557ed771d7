"""A batch job's studies as Ray tasks, when the job runs on a Ray cluster (`medui.training.runner`).

The job's process (the Ray Job's driver) lists the studies as on the local back end, then hands them out
in small groups to Ray tasks (`score_group`), each retried by Ray (`RETRIES`) when its worker or node dies.
A task checks that the job folder is visible on its node (shared storage), loads the model once per worker
process, scores each study as the local back end does (`batch_run.score_study`) and writes its result
once (`store.write_once`: a study already scored is left as it is), so a group run again after its node
died mid-way cannot write a study twice. The driver follows the progress in the database; on a `cancel`
file the tasks stop after their current study and the groups not started are cancelled.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from medui.db import worklist as store
from medui.db.worklist import FAILED, SCORED, StudyKey
from medui.errors import SharedStorageError
from medui.training import jobs
from medui.usecases.batch_sources import FolderSource, PacsSource, Source, prefetched, source_from
from medui.usecases.diagnose import LoadedModel, load_model

RETRIES = 3  # times Ray runs a group again after its worker or node died
GROUP_VARIABLE = "MEDUI_RAY_GROUP"  # studies per task; default about 4 tasks per CPU of the cluster, 1 to 8


@lru_cache(maxsize=2)
def _model(model_id: str, registry: str) -> LoadedModel:
    """The model, loaded once per Ray worker process (a worker runs many groups of one job); only Ray's
    worker processes call this, never a server."""
    _limit_threads()
    return load_model(model_id, Path(registry) if registry else None)


def _limit_threads() -> None:
    """TensorFlow's thread pools sized to the CPUs Ray gave this task: Ray runs one task per CPU, and
    TensorFlow's default (every core of the node, per worker) has the tasks on one node fight for its cores."""
    import ray

    from medui.ai.device import limit_cpu_threads

    limit_cpu_threads(round(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]


def _node() -> str:
    return socket.gethostname()


def _pause_point(job: jobs.Job, written: int) -> None:
    """Tests only: with MEDUI_TEST_PAUSE_AT=ray-study-<n>:<folder>, after a task's n-th written study, create
    <folder>/paused-<pid> and wait until <folder>/go exists or the job is cancelled; unset (always, outside
    tests), do nothing. Lets a test kill a node while one of its tasks is half done."""
    from medui.usecases.batch_run import PAUSE_VARIABLE

    wanted, _, folder = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if wanted != f"ray-study-{written}" or not folder:
        return
    (Path(folder) / f"paused-{os.getpid()}").touch()
    deadline = time.monotonic() + 600
    while not (Path(folder) / "go").exists() and not job.cancel_requested and time.monotonic() < deadline:
        time.sleep(0.05)


def score_group(job_dir: str, params: dict[str, Any], items: list[tuple[StudyKey, list[Any] | None]]
                ) -> dict[str, int]:
    """One Ray task: score `items` (a study's key and its files, or None to fetch it from the job's PACS
    source) and write each result once. SharedStorageError when this node cannot see the job folder."""
    from medui.usecases.batch_run import _send_results, score_study

    job = jobs.Job(Path(job_dir))
    if not (job.path / "params.json").is_file():
        raise SharedStorageError(f"the job folder {job_dir} is not visible on Ray node {_node()}; expected MEDUI_JOBS "
                                 "on storage every node of the cluster mounts at the same path")
    model = _model(str(params["model"]), os.environ.get("MEDUI_MODELS", ""))
    done = store.scored_uids(job.id)
    out = {"scored": 0, "failed": 0, "skipped": len([k for k, _ in items if k.study_uid in done]), "sent": 0}
    written = 0
    given = _Given(params, {k.study_uid: i for k, i in items if i is not None})
    # as on the local back end: the next studies are decoded in a thread while the model scores this one
    for key, loaded in prefetched(given, [k for k, _ in items if k.study_uid not in done]):
        if job.cancel_requested:
            break
        outcome = score_study(model, key, loaded)
        if not store.write_once(job.id, outcome):
            out["skipped"] += 1
            continue
        out["scored" if outcome.status == SCORED else "failed"] += 1
        if params.get("send") and outcome.flagged and isinstance(source := given.source(), PacsSource):
            out["sent"] += _send_results(source, model, outcome)
        print(f"[{_node()} pid {os.getpid()}] {outcome.status} {key.study_uid}"
              + (f" score {outcome.score:.4f}" if outcome.score is not None else f": {outcome.reason[:200]}"),
              flush=True)
        written += 1
        _pause_point(job, written)
    return out


class _Given:
    """A task's studies: the files the driver listed (a folder source), else fetched from the job's source."""

    def __init__(self, params: dict[str, Any], files: dict[str, list[Any]]) -> None:
        self.params, self.files = params, files
        self._source: Source | None = None

    def source(self) -> Source:
        if self._source is None:
            self._source = source_from(self.params)
        return self._source

    def studies(self) -> list[StudyKey]:
        return []

    def inputs(self, study_uid: str) -> list[Any]:
        found = self.files.get(study_uid)
        return found if found is not None else self.source().inputs(study_uid)


def group_size(n: int, cpus: float) -> int:
    """Studies per task: MEDUI_RAY_GROUP, else about 4 tasks per CPU (1 to 8 studies)."""
    wanted = os.environ.get(GROUP_VARIABLE, "").strip()
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return max(1, min(8, math.ceil(n / max(4 * cpus, 1))))


Progress = Callable[[int, int], None]  # (scored, failed) so far in the job


def run(job: jobs.Job, params: dict[str, Any], source: Source, todo: list[StudyKey], progress: Progress,
        interval: float = 0.5) -> tuple[int, int, int, bool]:
    """Score `todo` on the cluster this Ray Job runs on; (processed, failed, sent, cancelled) this run
    (processed and failed: the studies written since it started)."""
    import ray

    started = datetime.now(UTC)
    ray.init(log_to_driver=True)  # the Ray Job's cluster (RAY_ADDRESS); tasks inherit the job's runtime_env
    try:
        files = isinstance(source, FolderSource)
        items = [(k, source.inputs(k.study_uid) if files else None) for k in todo]
        size = group_size(len(items), float(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        task = ray.remote(score_group).options(max_retries=RETRIES, num_cpus=1, name="medui-score-group")
        pending = [task.remote(str(job.path), params, items[i:i + size]) for i in range(0, len(items), size)]
        print(f"{len(items)} studies in {len(pending)} Ray tasks of at most {size}", flush=True)
        cancelled, shown, sent = False, 0.0, 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=interval, fetch_local=True)
            for ref in ready:
                try:
                    got = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    continue
                except ray.exceptions.RayTaskError as exc:  # the task's own error (not retried): the job fails
                    raise (exc.cause if isinstance(exc.cause, Exception) else exc) from exc
                sent += int(got.get("sent", 0))
            if job.cancel_requested and not cancelled:
                cancelled = True
                for ref in pending:
                    ray.cancel(ref)  # not started: dropped; running: stops after its current study
            if time.monotonic() - shown > interval or not pending:
                shown = time.monotonic()
                counts = store.counts(job.id)
                progress(counts[SCORED], counts[FAILED])
        written = [r for r in store.studies([job.id]) if r.scored_at is not None and r.scored_at >= started]
        processed, failed = len(written), sum(r.status == FAILED for r in written)
        return processed, failed, sent, cancelled or job.cancel_requested and processed < len(items)
    finally:
        ray.shutdown()
