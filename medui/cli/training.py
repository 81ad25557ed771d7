"""Command line, Training: `train`, `train-job`, `evaluate`, `datasets`, `demo-model`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medui.errors import DatasetUnavailableError

if TYPE_CHECKING:
    from medui.training.fit import TrainConfig

T = TypeVar("T")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from medui.training.fit import TrainConfig

    cfg = TrainConfig(data=[str(p) for p in args.data], out=args.out, base=args.base, arch=args.arch,
                      epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                      min_sensitivity=args.min_sensitivity, patient_pattern=args.patient_pattern,
                      min_per_class=args.min_per_class, mixed_precision=args.mixed_precision,
                      weights=None if args.weights == "none" else args.weights, models_dir=args.dir)
    if args.head_epochs is not None:
        cfg.head_epochs = args.head_epochs
    if args.hflip:
        cfg.augment["hflip"] = 1.0
    return cfg


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from medui.ai.device import job_env
    from medui.training import jobs
    from medui.training.cards import run_metrics
    from medui.training.runs import run_job

    if "tensorflow" not in sys.modules:  # as in a job the page starts (effective before TensorFlow starts only)
        os.environ.update(job_env(os.environ))
    from medui.errors import MedUIError

    cfg = _train_config(args)
    try:
        job = jobs.create(cfg.to_json(), Path(args.jobs) if args.jobs else None, prefix="cli-")
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(f"job folder: {job.path}", flush=True)
    code = run_job(job.path) if args.json is False else _quiet(run_job, job.path)
    status, result = job.status(), job.result()
    if args.json:
        doc = {"job": str(job.path), "state": status.get("state")}
        if result:
            ev = result["evaluation"]
            doc.update({"model": result["model"], **run_metrics(ev, f"held-out test split ({ev['n']} images)",
                                                                 result.get("calibration_warning")),
                        "indeterminate": result.get("indeterminate"), "model_plan": result.get("model_plan"),
                        "evaluation_failed": bool(result.get("evaluation_failed")),
                        "device": result["device"], "mixed_precision": result["mixed_precision"]})
        else:
            doc["error"] = status.get("error") or status.get("message")
        print(json.dumps(doc, indent=2))
    elif status.get("state") != "done" or status.get("evaluation_failed"):
        print(f"training {status.get('state')}: {status.get('error') or status.get('message')}", file=sys.stderr)
    if status.get("state") == "done" and status.get("evaluation_failed"):
        return 3  # registered, flagged: evaluation failed
    return 0 if status.get("state") == "done" else max(code, 1)


def _quiet(fn: Callable[..., T], *a: Any) -> T:
    """Run with stdout to stderr, so --json prints one clean document."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        return fn(*a)


def _cmd_train_job(args: argparse.Namespace) -> int:
    from medui.training.runs import run_job

    return run_job(Path(args.job_dir))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from medui.errors import MedUIError
    from medui.training.cards import run_metrics
    from medui.training.data import index_dataset, load_arrays
    from medui.training.fit import evaluate_arrays
    from medui.usecases.diagnose import load_model

    try:
        entry, predictor, _ = _quiet(load_model, args.model, args.dir)
        index = index_dataset(args.data, args.patient_pattern, min_per_class=1)
        classes = entry.card.class_names
        keep = [i for i, s in enumerate(index.samples) if s.label in classes]
        if args.split and args.split != "all":
            keep = [i for i in keep if index.samples[i].split == args.split]
        if not keep:
            print(f"error: no images of the model's classes {classes} found (found {index.classes})",
                  file=sys.stderr)
            return 2
        x, y = load_arrays(index, keep, entry.card)
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ev = evaluate_arrays(predictor.probabilities(predictor.logits(x)), y, classes, entry.card.threshold)
    doc = {"model": entry.id, **run_metrics(ev, f"{', '.join(map(str, args.data))} ({args.split or 'all'})")}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        lo, hi = ev["auc_ci"]
        print(f"{entry.id} on {ev['n']} images: AUC {ev['auc']:.4f} (95% CI {lo:.4f}-{hi:.4f}), "
              f"accuracy {ev['accuracy']:.4f}, sensitivity {ev['sensitivity']:.4f}, "
              f"specificity {ev['specificity']:.4f} at threshold {ev['threshold']:.4f}; "
              f"confusion matrix {ev['confusion_matrix']}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from medui.training.public import write_pneumoniamnist

    try:
        info = write_pneumoniamnist(Path(args.out), args.size, args.npz, args.limit)
    except DatasetUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2))
    return 0


def _cmd_demo_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medui.synthetic.demo import train_demo

    train_demo(Path(args.out), n_train=args.n, epochs=args.epochs, seed=args.seed,
               log=lambda m: print(m, flush=True))
    return 0


def add_commands(sub: Any) -> None:
    """This module's subcommands on the `python -m medui` parser."""
    from medui.ai.architectures import ARCHITECTURES

    train = sub.add_parser("train", help="fine-tune or train a model on a labelled folder; registers a new version",
                           description="DATA: folder or zip with one sub-folder per class (optionally inside train/, "
                                       "val/, test/). With neither --base nor --arch: the recommended default "
                                       "(DenseNet121 on a GPU, MobileNetV2 on a CPU, ImageNet weights).")
    train.add_argument("data", nargs="+", type=Path, metavar="DATA")
    src = train.add_mutually_exclusive_group()
    src.add_argument("--base", help="registered model to fine-tune (id or name)")
    src.add_argument("--arch", choices=list(ARCHITECTURES))
    train.add_argument("--out", required=True, help="name of the new model")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--head-epochs", type=int, default=None, help="phase-1 epochs with the backbone frozen")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--weights", default="imagenet", help="'imagenet', a local weights file, or 'none'")
    train.add_argument("--min-sensitivity", type=float, default=None,
                       help="choose the threshold reaching this sensitivity (default: Youden's J)")
    train.add_argument("--patient-pattern", default=None, help="e.g. '<patient>_<n>.png'")
    train.add_argument("--min-per-class", type=int, default=10)
    train.add_argument("--hflip", action="store_true", help="allow horizontal flips (off: they move the heart)")
    train.add_argument("--mixed-precision", choices=["auto", "on", "off"], default="auto")
    train.add_argument("--jobs", default=None, help="job folder root (default: MEDUI_JOBS or ./jobs)")
    train.add_argument("--dir", default=None, help="model registry folder")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=_cmd_train)
    tj = sub.add_parser("train-job", help="run a prepared job folder (what the Train page starts)")
    tj.add_argument("job_dir")
    tj.set_defaults(func=_cmd_train_job)
    ev = sub.add_parser("evaluate", help="evaluate a registered model on a labelled folder")
    ev.add_argument("data", nargs="+", metavar="DATA")
    ev.add_argument("--model", required=True)
    ev.add_argument("--split", choices=["all", "train", "val", "test"], default="all")
    ev.add_argument("--patient-pattern", default=None)
    ev.add_argument("--dir", default=None)
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)
    dsets = sub.add_parser("datasets", help="write a public dataset as a labelled folder")
    dsets.add_argument("name", choices=["pneumoniamnist"])
    dsets.add_argument("--size", type=int, choices=[28, 64, 128, 224], default=64)
    dsets.add_argument("--out", required=True)
    dsets.add_argument("--npz", default=None, help="an already-downloaded .npz (offline)")
    dsets.add_argument("--limit", type=int, default=None, help="at most this many images per split")
    dsets.set_defaults(func=_cmd_datasets)
    demo = sub.add_parser("demo-model", help="train the demo model on synthetic chest phantoms (CPU, minutes)")
    demo.add_argument("--out", default="models", help="model registry folder (default: models)")
    demo.add_argument("--n", type=int, default=1600, help="training phantoms (default 1600)")
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo_model)
