"""One training run from start to registered model: the body of a job process.

Used by `python -m medui train-job DIR` (what the Train page starts) and by `python -m medui train`
(which runs the same job in the foreground), so both paths are one code path:

    prepare (devices, dataset index, split, base model) -> fit -> calibrate -> evaluate -> register

status.json's message follows: starting TensorFlow, reading the dataset, building the model, preparing
images (n/N), epoch k/N running / done, calibrating, evaluating, registering, and the outcome.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from medui.ai.card import ModelCard
from medui.ai.kerastypes import KerasModel
from medui.ai.registry import pause_point
from medui.errors import TrainingError
from medui.training import metrics
from medui.training.cards import card_for_run, jsonable, run_metrics
from medui.training.data import DatasetIndex, class_numbers, index_dataset, order_classes, split
from medui.training.fit import (
    DeviceInfo,
    JobCallback,
    ModelPlan,
    TrainConfig,
    base_model,
    class_weights,
    evaluate_arrays,
    plan_model,
    rename_head,
    set_trainable,
    setup_devices,
)
from medui.training.folders import ScanLimits
from medui.training.jobs import Job, TrainLock, process_start, write_json
from medui.training.shards import ShardCache, prepared
from medui.training.stream import logits, stream

if TYPE_CHECKING:
    from medui.ai.registry import Entry


@dataclass(frozen=True)
class RunContext:
    """What every step of a run needs; steps return new values, they do not mutate this."""

    job: Job
    cfg: TrainConfig
    device: DeviceInfo
    index: DatasetIndex
    parts: dict[str, list[int]]  # split -> sample indices
    card: ModelCard  # template: architecture, input, preprocessing, classes (metrics come at the end)
    parent: Entry | None
    pretrained: bool
    plan: ModelPlan  # what is trained, from which weights (page, job log and card say the same)
    started: float  # time.time() when the job started running


@dataclass(frozen=True)
class FitResult:
    model: KerasModel
    epochs_run: int  # epochs actually trained (early stopping may end a phase early)
    first_epoch_end: float | None  # time.time() at the end of the first epoch
    train_s: float
    n_train: int


@dataclass(frozen=True)
class Calibration:
    card: ModelCard  # the template with classes, threshold, indeterminate band and temperature
    temperature: float | None
    warning: str | None = None  # evaluation failed: the calibration flattens (or saturates) every score


def _models_dir(cfg: TrainConfig) -> Path | None:
    return Path(cfg.models_dir) if cfg.models_dir else None


def _status(job: Job, **fields: Any) -> None:
    write_json(job.path / "status.json", {**job.status(), **fields, "updated": time.time()})


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_job(job_dir: Path) -> int:
    """Run the job in `job_dir`; every outcome is written to status.json. Returns an exit code."""
    job = Job(Path(job_dir))
    cfg = TrainConfig(**job.params())
    lock = TrainLock(job.path.parent)
    from medui.ai.device import gpu_present

    plan = plan_model(cfg.arch, cfg.base, gpu_present(), cfg.weights, models_dir=_models_dir(cfg))
    _log(f"will train: {plan.text()}")  # the log's first line; the page said the same before the click
    _status(job, state="queued", pid=os.getpid(), pid_start=process_start(os.getpid()), plan=plan.text(),
            message="waiting for the training slot")
    if not lock.acquire(job):
        _status(job, state="cancelled", message="cancelled while queued")
        return 0
    try:
        started = time.time()
        _status(job, state="running", started=started, message="starting TensorFlow")
        result = train(job, cfg, started)
        if result is None:
            _status(job, state="cancelled", message="cancelled by the user; nothing was registered")
            return 0
        write_json(job.path / "result.json", result)
        message = f"registered {result['model']} as a candidate; review and promote it on the Models page"
        if result["evaluation_failed"]:
            message = (f"EVALUATION FAILED: {result['calibration_warning']}. Registered {result['model']} as a "
                       "candidate flagged as failed, for inspection only; do not promote it")
        _status(job, state="done", finished=time.time(), model=result["model"],
                evaluation_failed=result["evaluation_failed"], message=message)
        return 0
    except Exception as exc:  # every failure must end as a readable 'failed' status, never a silent death
        print(traceback.format_exc(), flush=True)
        _status(job, state="failed", error=f"{type(exc).__name__}: {exc}", finished=time.time())
        return 1
    finally:
        lock.release()


def train(job: Job, cfg: TrainConfig, started: float) -> dict[str, Any] | None:
    """The run's steps; None when cancelled."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    ctx, model = prepare(job, cfg, started)
    cache = prepare_images(ctx)
    if cache is None:
        return None
    fitted = fit(ctx, model, cache)
    if fitted is None:
        return None
    _status(job, message="calibrating on the validation split")
    cal = calibrate(ctx, fitted.model, cache)
    _status(job, message="evaluating on the held-out test split")
    ev, parent_ev, compared = evaluate(ctx, fitted.model, cal.card, cache)
    cache.close()
    _status(job, message="registering the model")
    entry = register(ctx, fitted, cal, ev, compared)
    result: dict[str, Any] = jsonable({
        "model": entry.id, "path": str(entry.path), "model_plan": ctx.plan.to_json(),
        "evaluation_failed": cal.warning is not None, "calibration_warning": cal.warning,
        "indeterminate": cal.card.indeterminate, "evaluation": ev, "parent": ctx.parent.id if ctx.parent else None,
        "parent_evaluation": parent_ev, "device": ctx.device.label, "mixed_precision": ctx.device.mixed_precision,
        "train_s": round(fitted.train_s, 1), "epochs_run": fitted.epochs_run,
        "time_to_first_epoch_s": round(fitted.first_epoch_end - started, 1) if fitted.first_epoch_end else None,
        "images_per_s": round(fitted.n_train * fitted.epochs_run / max(fitted.train_s, 1e-6), 1)})
    return result


def job_index(job: Job, cfg: TrainConfig) -> DatasetIndex:
    """The index the Train page wrote into the job folder, else a new one written there. Either way the
    job works from the folder's copy, whose file names are pseudonymous (a folder name may be a patient's)."""
    path = job.path / "index.json"
    if not path.exists():  # each folder given is its own root; a cancelled job stops listing
        scan = ScanLimits(cancelled=lambda: job.cancel_requested)
        write_json(path, index_dataset(cfg.data, cfg.patient_pattern, cfg.min_per_class, scan=scan).to_json())
    return DatasetIndex.from_json(json.loads(path.read_text()))


def prepare(job: Job, cfg: TrainConfig, started: float) -> tuple[RunContext, KerasModel]:
    """Devices, the dataset index and split (written to the job folder), the base model and card template."""
    dev = setup_devices(cfg.mixed_precision)
    _log(f"device: {dev.label} · mixed precision {'on' if dev.mixed_precision else 'off'} · {dev.strategy_name}")
    _status(job, message="reading the dataset")
    index = job_index(job, cfg)
    parts = split(index, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    # sample numbers per split, and their files (pseudonymous below the class folders: no patient folder name)
    write_json(job.path / "split.json", {**parts, "files": {k: [index.job_name(index.samples[i]) for i in v]
                                                           for k, v in parts.items()}})
    write_json(job.path / "dataset.json", index.report.to_json())
    if not parts["val"] or not parts["test"]:
        raise TrainingError("the validation or test split is empty; add images or patients")
    _log(f"dataset: {len(index.samples)} images, classes {index.classes}, split "
         f"{ {k: len(v) for k, v in parts.items()} }, grouping by {index.report.grouping}")
    _status(job, message="building the model")
    with dev.strategy.scope():
        model, template, parent, notes, pretrained, plan = base_model(cfg, len(index.classes), dev.gpus > 0,
                                                                      _models_dir(cfg))
    for n in notes:
        _log(n)
    _log(f"training: {plan.text()}")
    _status(job, plan=plan.text())
    # keep the parent's class order (which class is positive) when the classes match
    classes = order_classes(index.classes, parent.card.class_names if parent else None)
    template = dataclasses.replace(template, class_names=classes,
                                   task="binary" if len(classes) == 2 else "multiclass")
    ctx = RunContext(job, cfg, dev, index, parts, template, parent, pretrained, plan, started)
    return ctx, model


def _phases(ctx: RunContext) -> list[tuple[str, int, float | None, float]]:
    """(name, epochs, trainable backbone fraction, learning rate) per phase."""
    cfg = ctx.cfg
    if ctx.pretrained and cfg.epochs > cfg.head_epochs > 0:
        return [("head", cfg.head_epochs, 0.0, cfg.learning_rate),
                ("fine-tune", cfg.epochs - cfg.head_epochs, cfg.unfreeze_fraction,
                 cfg.learning_rate * cfg.fine_tune_lr_factor)]
    return [("full", cfg.epochs, None, cfg.learning_rate)]


def _epoch_writer(ctx: RunContext, fh: IO[str]) -> Any:
    def write(row: dict[str, Any]) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        _status(ctx.job, epoch=row["epoch"], epochs=ctx.cfg.epochs, eta_s=row["eta_s"],
                message=f"epoch {row['epoch']}/{ctx.cfg.epochs} done ({row['phase']})")
        _log(f"epoch {row['epoch']}/{ctx.cfg.epochs} {row['phase']}: " +
             " ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k not in ("seconds",)))

    return write


def _image_progress(job: Job, total: int) -> Callable[[int], None]:
    """A progress callback writing 'preparing images (n/N)' at most twice a second."""
    last = [0.0]

    def report(n: int) -> None:
        now = time.time()
        if n >= total or now - last[0] >= 0.5:
            last[0] = now
            _status(job, message=f"preparing images ({n}/{total})")

    return report


def _epoch_running(ctx: RunContext, phase: str, epoch: int) -> None:
    _status(ctx.job, message=f"epoch {epoch}/{ctx.cfg.epochs} running ({phase})")


def prepare_images(ctx: RunContext) -> ShardCache | None:
    """Every sample of the dataset (record k is sample k) prepared for the card, from the prepared-image
    cache or decoded into it now in worker processes ('preparing images (n/N)'); None when cancelled."""
    total = len(ctx.index.samples)
    _status(ctx.job, message=f"preparing images (0/{total})")
    cache = prepared(ctx.index, range(total), ctx.card, _image_progress(ctx.job, total),
                     lambda: ctx.job.cancel_requested)
    if cache is not None:
        _log(f"prepared images: {cache.count} in the cache {cache.path.name[:12]}, {cache.decoded} decoded now "
             f"({cache.seconds:.1f} s)")
    return cache


def labels(ctx: RunContext, indices: list[int], card: ModelCard | None = None) -> np.ndarray:
    return class_numbers(ctx.index, indices, (card or ctx.card).class_names)


def fit(ctx: RunContext, model: KerasModel, cache: ShardCache) -> FitResult | None:
    """Train (two phases for pretrained backbones) with early stopping on validation AUC, streaming from
    the prepared-image cache; None when cancelled."""
    import keras

    cfg, n_cls = ctx.cfg, len(ctx.card.class_names)
    y_tr = labels(ctx, ctx.parts["train"])
    train_ds = stream(cache, ctx.parts["train"], y_tr, cfg.batch_size, cfg.augment, cfg.seed, n_cls)
    val_ds = stream(cache, ctx.parts["val"], labels(ctx, ctx.parts["val"]), cfg.batch_size, None, cfg.seed, n_cls)
    weights = class_weights(y_tr, n_cls)
    n_train = len(y_tr)
    done, epochs_run, first_end = 0, 0, None
    pause_point("fit")
    t_train = time.time()
    with open(ctx.job.path / "metrics.jsonl", "a") as fh:
        write = _epoch_writer(ctx, fh)
        for phase, epochs, fraction, lr in _phases(ctx):
            if epochs <= 0:
                continue
            set_trainable(model, fraction)
            steps = int(np.ceil(n_train / cfg.batch_size)) * epochs
            with ctx.device.strategy.scope():
                loss = keras.losses.BinaryCrossentropy() if n_cls == 2 else keras.losses.CategoricalCrossentropy()
                model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps,
                                                                                                     alpha=0.05)),
                              loss=loss, metrics=[keras.metrics.AUC(name="auc", multi_label=n_cls > 2)],
                              jit_compile=ctx.device.gpus > 0)
            cb = JobCallback(write, cfg.epochs, lambda: ctx.job.cancel_requested, phase, done, ctx.started,
                             began=functools.partial(_epoch_running, ctx, phase))
            stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience,
                                                 restore_best_weights=True)
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, verbose=0,
                      callbacks=[cb.callback, stop])
            first_end = first_end or cb.first_epoch_end
            epochs_run += cb.epochs_run
            done += epochs
            if cb.cancelled:
                return None
    train_s = time.time() - t_train
    if "logits_new" in [layer.name for layer in model.layers]:
        model = rename_head(model)
    return FitResult(model, epochs_run, first_end, train_s, n_train)


def calibrate(ctx: RunContext, model: KerasModel, cache: ShardCache) -> Calibration:
    """Temperature (binary) and the operating threshold, both on the validation split."""
    from medui.ai.inference import Predictor

    y_va = labels(ctx, ctx.parts["val"])
    z_va = logits(model, cache, ctx.parts["val"], ctx.cfg.batch_size)
    if len(ctx.card.class_names) > 2:
        card = dataclasses.replace(ctx.card, training={}, threshold=0.5,
                                   threshold_method="argmax of the class probabilities")
        return Calibration(card, None)
    temperature = metrics.fit_temperature(z_va[:, 0], y_va)
    # nothing of the parent's training (its temperature) carries over
    uncalibrated = dataclasses.replace(ctx.card, training={"temperature": temperature})
    p_va = Predictor(model, uncalibrated).probabilities(z_va)[:, 1]
    threshold, method = metrics.choose_threshold(y_va, p_va, ctx.cfg.min_sensitivity)
    band = metrics.indeterminate_band(y_va, p_va, threshold)
    warning = metrics.calibration_check(temperature, p_va)
    if warning:
        _log(f"EVALUATION FAILED: {warning}")
    card = dataclasses.replace(uncalibrated, threshold=threshold, threshold_method=f"{method}; {metrics.BAND_METHOD}",
                               indeterminate=band)
    return Calibration(card, temperature, warning)


def evaluate(ctx: RunContext, model: KerasModel, card: ModelCard, cache: ShardCache
             ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """The held-out test split, for the new model and, on the same images, its parent and the model
    promoted for the task (same classes): (evaluation, parent's evaluation, {model id: summary}).
    Every model's inputs stream from the prepared-image cache (its own card's, built when needed)."""
    from medui.ai.inference import Predictor
    from medui.ai.promotion import default, statuses, task_of
    from medui.ai.registry import list_models, load_keras

    classes, test, batch = card.class_names, ctx.parts["test"], ctx.cfg.batch_size
    y_te = labels(ctx, test, card)
    ev = evaluate_arrays(Predictor(model, card).probabilities(logits(model, cache, test, batch)), y_te, classes,
                         card.threshold)
    others: dict[str, Entry] = {}
    if ctx.parent is not None:
        others[ctx.parent.id] = ctx.parent
    models_dir = _models_dir(ctx.cfg)
    same_task = [s for s in statuses(list_models(models_dir), models_dir) if s.task == task_of(card)]
    promoted = default([s for s in same_task if s.promoted])
    if promoted is not None:
        others.setdefault(promoted.entry.id, promoted.entry)
    compared: dict[str, dict[str, Any]] = {}
    parent_ev = None
    for model_id, entry in others.items():
        if entry.card.class_names != classes:
            continue
        own = prepared(ctx.index, test, entry.card)  # its own preprocessing, the same images (record k: test[k])
        if own is None:
            continue
        other = load_keras(entry.path)
        zo = logits(other, own, list(range(len(test))), batch)
        own.close()
        oev = evaluate_arrays(Predictor(other, entry.card).probabilities(zo), labels(ctx, test, entry.card), classes,
                              entry.card.threshold)
        compared[model_id] = run_metrics(oev, f"held-out test split ({oev['n']} images)")
        if ctx.parent is not None and model_id == ctx.parent.id:
            parent_ev = oev
    return ev, parent_ev, compared


def _source(cfg: TrainConfig, names_patient: bool) -> str:
    """The dataset as the card names it: the folders the user gave, unless one of them names a patient."""
    if names_patient:
        return (f"(withheld: the dataset path names one of its patients; {len(cfg.data)} folder(s), "
                "see the content hash)")
    return ", ".join(str(d) for d in cfg.data)


def _audit_registration(job: Job, model_id: str) -> None:
    """The audit trail's 'register-model' row, for the user who started the job (a failure is logged:
    the model is registered by then)."""
    from medui.accounts import audit
    from medui.accounts.actor import Actor
    from medui.errors import AuditStoreError

    who = job.started_by()
    actor = Actor(who.get("subject", "unattributed"), who.get("name", ""), frozenset(), via="job")
    try:
        audit.record(audit.REGISTER_MODEL, actor, model_id, details={"job": job.id})
    except AuditStoreError as exc:
        _log(f"warning: {exc}")


def register(ctx: RunContext, fitted: FitResult, cal: Calibration, ev: dict[str, Any],
             compared: dict[str, dict[str, Any]] | None = None) -> Entry:
    """The final card (`card_for_run`) and the model into the registry."""
    from medui.ai.registry import next_version
    from medui.ai.registry import register as add

    cfg, report, parts, dev = ctx.cfg, ctx.index.report, ctx.parts, ctx.device
    seen = set(report.modalities)
    card = card_for_run(
        cal.card, name=cfg.out, version=next_version(cfg.out, _models_dir(cfg)), classes=cal.card.class_names,
        evaluation=ev, split=f"held-out test split ({ev['n']} images)", threshold=cal.card.threshold,
        threshold_method=cal.card.threshold_method, temperature=cal.temperature,
        indeterminate=cal.card.indeterminate, calibration_warning=cal.warning, compared=compared,
        parent=ctx.parent.id if ctx.parent else None,
        training_data={"source": _source(cfg, report.source_names_patient), "content_hash": report.content_hash,
                       "counts": report.counts, "patients": report.patients, "grouping": report.grouping,
                       "split_sizes": {k: len(v) for k, v in parts.items()}},
        training={"model_plan": ctx.plan.to_json(),
                  "config": {**cfg.to_json(),
                             **({"data": [_source(cfg, True)]} if report.source_names_patient else {})},
                  "device": dev.label, "mixed_precision": dev.mixed_precision,
                  "duration_s": round(time.time() - ctx.started), "train_s": round(fitted.train_s),
                  "epochs_run": fitted.epochs_run, "job": ctx.job.id},
        modalities=sorted(seen) if seen and "OT" not in seen else [],  # PNG/JPEG say nothing of modality
        intended_use="Decision support for qualified clinicians. Not a medical device.",
        limitations=(f"Trained on {len(parts['train'])} images ({report.grouping}); evaluated on {ev['n']} held-out "
                     "images from the same source. Performance on other scanners, sites and populations is unknown."))
    card = dataclasses.replace(card, registered_by=ctx.job.started_by())  # who started the job
    tmp = ctx.job.path / "model.keras"
    pause_point("save")
    fitted.model.save(tmp)
    entry = add(tmp, card, _models_dir(cfg))
    _audit_registration(ctx.job, entry.id)
    _log(f"registered {entry.id}: test AUC {ev['auc']:.4f}, threshold {card.threshold:.4f}")
    return entry
