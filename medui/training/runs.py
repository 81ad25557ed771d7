"""One training run from start to registered model: the body of a job process.

Used by `python -m medui train-job DIR` (what the Train page starts) and by `python -m medui train`
(which runs the same job in the foreground), so both paths are one code path.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from medui.errors import TrainingError
from medui.training import metrics
from medui.training.fit import (
    JobCallback,
    TrainConfig,
    class_weights,
    default_arch,
    evaluate_arrays,
    jsonable,
    pipeline,
    prepared_arrays,
    rename_head,
    replace_head,
    set_trainable,
    setup_devices,
    summary_metrics,
)
from medui.training.jobs import Job, TrainLock, write_json


def _status(job: Job, **fields: Any) -> None:
    write_json(job.path / "status.json", {**job.status(), **fields, "updated": time.time()})


def run_job(job_dir: Path) -> int:
    """Run the job in `job_dir`; every outcome is written to status.json. Returns an exit code."""
    job = Job(Path(job_dir))
    cfg = TrainConfig(**job.params())
    lock = TrainLock(job.path.parent)
    import os

    _status(job, state="queued", pid=os.getpid(), message="waiting for the training slot")
    if not lock.acquire(job):
        _status(job, state="cancelled", message="cancelled while queued")
        return 0
    try:
        _status(job, state="running", started=time.time(), message="reading the dataset")
        result = _train(job, cfg)
        if result is None:
            _status(job, state="cancelled", message="cancelled by the user; nothing was registered")
            return 0
        write_json(job.path / "result.json", result)
        _status(job, state="done", finished=time.time(), model=result["model"], message=f"registered {result['model']}")
        return 0
    except Exception as exc:  # every failure must end as a readable 'failed' status, never a silent death
        print(traceback.format_exc(), flush=True)
        _status(job, state="failed", error=f"{type(exc).__name__}: {exc}", finished=time.time())
        return 1
    finally:
        lock.release()


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _base_model(cfg: TrainConfig, n_classes: int, gpu: bool):  # type: ignore[no-untyped-def]
    """(model, card template, parent entry or None, notes, pretrained)."""
    from medui.ai.architectures import ARCHITECTURES, build
    from medui.ai.card import ModelCard, Preprocessing
    from medui.ai.registry import find, load_keras

    if cfg.base:
        entry = find(cfg.base, cfg.models_dir)
        model = load_keras(entry.path)
        card = ModelCard.from_json(entry.card.to_json())
        notes = [f"fine-tuning {entry.id}"]
        n_old = 2 if entry.card.task == "binary" else len(entry.card.class_names)
        if n_old != n_classes or entry.card.task != ("binary" if n_classes == 2 else "multiclass"):
            model = replace_head(model, n_classes)
            notes.append("classes differ from the parent: new head")
        return model, card, entry, notes, True
    arch = cfg.arch or default_arch(gpu)
    spec = ARCHITECTURES[arch]
    built = build(arch, n_classes=n_classes, weights=cfg.weights if spec["pretrained"] else None)
    pretrained = bool(spec["pretrained"] and cfg.weights and not built.notes)
    if cfg.arch is None and spec["pretrained"] and not pretrained:
        # No ImageNet weights (offline): a randomly initialised backbone needs far more data than a
        # fine-tuning set; the small CNN trained from scratch is the better default then.
        notes = built.notes + ["ImageNet weights unavailable: training the small CNN from scratch instead"]
        arch, spec = "small_cnn", ARCHITECTURES["small_cnn"]
        built = build(arch, n_classes=n_classes)
        built = type(built)(built.model, built.cam_layer, notes)
    card = ModelCard(name=cfg.out, version=1, class_names=["a", "b"], input_size=list(spec["size"]),
                     channels=spec["channels"], architecture=arch, cam_layer=built.cam_layer,
                     preprocessing=Preprocessing("percentile", 0.5, 99.5, None, "letterbox"))
    return built.model, card, None, [f"architecture {arch}"] + built.notes, pretrained


def _train(job: Job, cfg: TrainConfig) -> dict[str, Any] | None:
    import keras

    from medui.training.data import scan, split

    t0 = time.time()
    keras.utils.set_random_seed(cfg.seed)
    dev = setup_devices(cfg.mixed_precision)
    _log(f"device: {dev['device']} · mixed precision {'on' if dev['mixed_precision'] else 'off'} · {dev['strategy']}")
    dataset = scan(cfg.data, cfg.patient_pattern, cfg.min_per_class)
    report = dataset.report
    parts = split(dataset, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    write_json(job.path / "split.json", {k: [dataset.samples[i].file for i in v] for k, v in parts.items()})
    write_json(job.path / "dataset.json", report.to_json())
    if not parts["val"] or not parts["test"]:
        raise TrainingError("the validation or test split is empty; add images or patients")
    classes = report.classes
    _log(f"dataset: {len(dataset.samples)} images, classes {classes}, split "
         f"{ {k: len(v) for k, v in parts.items()} }, grouping by {report.grouping}")
    with dev["_strategy"].scope():
        model, card, parent, notes, pretrained = _base_model(cfg, len(classes), dev["gpus"] > 0)
    for n in notes:
        _log(n)
    if parent is not None:  # keep the parent's class order (which class is positive) when the classes match
        from medui.training.data import order_classes

        classes = order_classes(classes, parent.card.class_names)
    card.class_names = classes
    card.task = "binary" if len(classes) == 2 else "multiclass"
    x_tr, y_tr = prepared_arrays(dataset, parts["train"], card)
    x_va, y_va = prepared_arrays(dataset, parts["val"], card)
    x_te, y_te = prepared_arrays(dataset, parts["test"], card)
    n_cls = len(classes)
    train_ds = pipeline(x_tr, y_tr, cfg.batch_size, cfg.augment, cfg.seed, n_cls)
    val_ds = pipeline(x_va, y_va, cfg.batch_size, None, cfg.seed, n_cls)
    weights = class_weights(y_tr, n_cls)
    phases = [("head", cfg.head_epochs, 0.0, cfg.learning_rate),
              ("fine-tune", cfg.epochs - cfg.head_epochs, cfg.unfreeze_fraction, cfg.learning_rate * cfg.fine_tune_lr_factor)] \
        if pretrained and cfg.epochs > cfg.head_epochs > 0 else [("full", cfg.epochs, None, cfg.learning_rate)]
    metrics_file = open(job.path / "metrics.jsonl", "a")

    def write(row: dict) -> None:
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        _status(job, epoch=row["epoch"], epochs=cfg.epochs, eta_s=row["eta_s"],
                message=f"epoch {row['epoch']}/{cfg.epochs} ({row['phase']})")
        _log(f"epoch {row['epoch']}/{cfg.epochs} {row['phase']}: " +
             " ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k not in ("seconds",)))

    auc_name = "auc"
    done = 0
    t_train = time.time()
    first_epoch_s = None
    for phase, epochs, fraction, lr in phases:
        if epochs <= 0:
            continue
        set_trainable(model, fraction)
        steps = int(np.ceil(len(x_tr) / cfg.batch_size)) * epochs
        with dev["_strategy"].scope():
            model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)),
                          loss=keras.losses.BinaryCrossentropy() if n_cls == 2 else keras.losses.CategoricalCrossentropy(),
                          metrics=[keras.metrics.AUC(name=auc_name, multi_label=n_cls > 2)],
                          jit_compile=dev["gpus"] > 0)
        cb = JobCallback(write, cfg.epochs, lambda: job.cancel_requested, phase, done)
        stop = keras.callbacks.EarlyStopping(monitor=f"val_{auc_name}", mode="max", patience=cfg.patience,
                                             restore_best_weights=True)
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, class_weight=weights, verbose=0,
                  callbacks=[cb.callback, stop])
        if first_epoch_s is None and cb.durations:
            first_epoch_s = time.time() - t0
        done += epochs
        if cb.cancelled:
            metrics_file.close()
            return None
    metrics_file.close()
    train_s = time.time() - t_train
    if "logits_new" in [layer.name for layer in model.layers]:
        model = rename_head(model)
    result = _evaluate_and_register(job, cfg, model, card, parent, (x_va, y_va), (x_te, y_te), dataset, parts, dev,
                                    train_s, t0)
    result["time_to_first_epoch_s"] = round(first_epoch_s or 0, 1)
    result["images_per_s"] = round(len(x_tr) * cfg.epochs / max(train_s, 1e-6), 1)
    return result


def _evaluate_and_register(job, cfg, model, card, parent, val, test, dataset, parts, dev, train_s, t0):  # type: ignore[no-untyped-def]
    import keras

    from medui.ai.inference import Predictor
    from medui.ai.registry import next_version, register

    classes = card.class_names
    report = dataset.report
    logit_model = keras.Model(model.inputs, model.get_layer("logits").output)
    z_va = np.asarray(logit_model.predict(val[0], verbose=0), np.float64)
    card.training = {}  # nothing of the parent's training (its temperature) carries over
    if len(classes) == 2:
        card.training = {"temperature": metrics.fit_temperature(z_va[:, 0], val[1])}
    card.threshold, card.threshold_method = (0.5, "argmax of the class probabilities") if len(classes) > 2 else (0.5, "")
    pred = Predictor(model, card)
    p_va = pred.probabilities(z_va)
    if len(classes) == 2:
        card.threshold, card.threshold_method = metrics.choose_threshold(val[1], p_va[:, 1], cfg.min_sensitivity)
    p_te = pred.probabilities(np.asarray(logit_model.predict(test[0], verbose=0), np.float64))
    ev = evaluate_arrays(p_te, test[1], classes, card.threshold)
    parent_ev = None
    if parent is not None and parent.card.class_names == classes:
        from medui.ai.registry import load_keras

        ppred = Predictor(load_keras(parent.path), parent.card)
        xp, yp = prepared_arrays(dataset, parts["test"], parent.card)  # the parent's own preprocessing, same images
        parent_ev = evaluate_arrays(ppred.probabilities(ppred.logits(xp)), yp, classes, parent.card.threshold)
    version = next_version(cfg.out, cfg.models_dir)
    card.name, card.version = cfg.out, version
    card.parent = parent.id if parent else None
    card.demo = False
    card.created = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    card.metrics = {**summary_metrics(ev), "split": f"held-out test split ({ev['n']} images)"}
    card.training_data = {"source": ", ".join(str(d) for d in cfg.data), "content_hash": report.content_hash,
                          "counts": report.counts, "patients": report.patients, "grouping": report.grouping,
                          "split_sizes": {k: len(v) for k, v in parts.items()}}
    card.training.update({"config": jsonable(cfg.to_json()), "device": dev["device"],
                          "mixed_precision": dev["mixed_precision"], "duration_s": round(time.time() - t0),
                          "train_s": round(train_s), "job": job.id})
    seen = set(report.modalities)
    card.modalities = sorted(seen) if seen and "OT" not in seen else []  # PNG/JPEG say nothing of modality
    card.intended_use = "Decision support for qualified clinicians. Not a medical device."
    card.limitations = (f"Trained on {len(parts['train'])} images ({report.grouping}); evaluated on "
                        f"{ev['n']} held-out images from the same source. Performance on other scanners, "
                        "sites and populations is unknown.")
    tmp = job.path / "model.keras"
    model.save(tmp)
    entry = register(tmp, card, cfg.models_dir)
    _log(f"registered {entry.id}: test AUC {ev['auc']:.4f}, threshold {card.threshold:.4f}")
    return jsonable({"model": entry.id, "path": str(entry.path), "evaluation": ev, "parent": parent.id if parent else None,
                     "parent_evaluation": parent_ev, "device": dev["device"], "mixed_precision": dev["mixed_precision"],
                     "train_s": round(train_s, 1)})
