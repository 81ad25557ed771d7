"""Command line: `python -m medui COMMAND ...`. Every capability of the pages is reachable here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medui import __version__
from medui.errors import DatasetUnavailableError

if TYPE_CHECKING:
    from medui.training.fit import TrainConfig
    from medui.usecases.diagnose import Diagnosis

T = TypeVar("T")


def _cmd_info(args: argparse.Namespace) -> int:
    from medui.io.loader import load
    from medui.reading.display import (
        display_order,
        pixel_spacing_known,
        slice_axis,
        slice_label,
        slice_positions_mm,
    )

    result = load(args.paths)
    if args.json:
        doc = result.to_json()
        for s, js in zip(result.series, doc["series"], strict=True):
            # `shape` and `affine` are in stored order; pages and `predict` number slices like the Viewer
            js.update(pixel_spacing_known=pixel_spacing_known(s), slice_axis=slice_axis(s),
                      display_order=[int(i) for i in display_order(s)], slice_positions_mm=slice_positions_mm(s))
        print(json.dumps(doc, indent=2))
        return 0 if result.series else 1
    for k, s in enumerate(result.series, 1):
        lo, hi = s.value_range
        sp = s.spacing
        print(f"Series {k}: {s.summary()}")
        print(f"  modality:     {s.modality}   format: {s.source_format}")
        print(f"  description:  {s.description or '-'}")
        shape = " x ".join(str(n) for n in s.pixels.shape)
        print(f"  shape:        {shape} (slices, rows, cols{', RGB' if s.is_color else ''})")
        if pixel_spacing_known(s):
            print(f"  spacing:      {sp[0]:.4g} x {sp[1]:.4g} x {sp[2]:.4g} mm (slice, row, col)")
        else:
            print("  spacing:      unknown (not recorded): sizes are in pixels")
        if s.n_slices > 1:
            print(f"  slices:       {slice_label(s, 0)} .. {slice_label(s, s.n_slices - 1)} (the Viewer's numbering)")
        print(f"  value range:  {lo:g} .. {hi:g}{' HU' if s.modality == 'CT' else ''}")
        print(f"  photometric:  {s.photometric}")
        print("  affine (slice,row,col -> LPS mm):")
        for row in s.affine[:3]:
            print("    " + "  ".join(f"{v:10.4f}" for v in row))
        print(f"  files read:   {len(s.files)}")
        for w in s.warnings:
            print(f"  warning:      {w}")
    if result.skipped:
        print(f"Skipped {len(result.skipped)} file(s):")
        for sk in result.skipped:
            print(f"  {sk.file}: {sk.reason}")
    print(result.summary())
    if not result.series:
        print("No image series found.", file=sys.stderr)
        return 1
    return 0


def _cmd_demo_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medui.synthetic.demo import train_demo

    train_demo(Path(args.out), n_train=args.n, epochs=args.epochs, seed=args.seed,
               log=lambda m: print(m, flush=True))
    return 0


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _cmd_models(args: argparse.Namespace) -> int:
    from medui.errors import MedUIError
    from medui.usecases.models import status

    root = Path(args.dir) if args.dir else None
    try:
        if args.add:
            from medui.usecases.models import register_upload

            card = Path(args.card)
            entry = register_upload(Path(args.add).read_bytes(), Path(args.add).name, card.read_bytes(),
                                    card_name=card.name, root=root)
            print(f"registered {entry.id} as a candidate: {entry.path}\n"
                  f"It is not used by default until promoted: python -m medui promote {entry.id}")
            return 0
        if args.delete:
            from medui.usecases.models import delete

            print(f"deleted {delete(args.delete, root, user=_user()).id}")
            return 0
        models = status(root)
    except (MedUIError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [{"id": s.entry.id, "name": s.entry.card.name, "version": s.entry.card.version,
             "classes": s.entry.card.class_names, "task": s.task, "status": s.label.split(" ")[0],
             "promoted": s.promoted, "demo_fallback": s.demo_fallback, "evaluated": s.evaluated,
             "created": s.entry.card.created, "threshold": s.entry.card.threshold,
             "architecture": s.entry.card.architecture, "input": s.entry.card.input_size + [s.entry.card.channels],
             "auc": s.entry.card.metrics.get("auc"), "auc_ci": s.entry.card.metrics.get("auc_ci"),
             "demo": s.entry.card.demo, "parent": s.entry.card.parent, "path": str(s.entry.path)} for s in models]
    if args.json:
        promoted = {s.task: s.entry.id for s in models if s.promoted}
        print(json.dumps({"models": rows, "promoted": promoted}, indent=2))
        return 0
    if not rows:
        print("No models registered. Train the demo model: python -m medui demo-model")
        return 0
    for s in models:
        c = s.entry.card
        auc = c.metrics.get("auc")
        auc_text = f"AUC {auc:.3f}" if isinstance(auc, (int, float)) else "not evaluated"
        tag = "  [demo, synthetic data]" if c.demo else ""
        print(f"{s.entry.id:<32} {s.label:<16} {s.task:<28} {c.architecture:<16} thr {c.threshold:.3f}  "
              f"{auc_text:<13}  {c.created}{tag}")
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from medui.errors import MedUIError, PromotionRefusedError
    from medui.usecases.models import promote

    try:
        done = promote(args.name, override=args.override, user=_user(), via="cli",
                       root=Path(args.dir) if args.dir else None)
    except PromotionRefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    how = f" with override ({done.override})" if done.override and any(f.blocking for f in done.findings) else ""
    print(f"promoted {done.status.entry.id} for '{done.status.task}'{how}; before: {done.previous or 'none'}")
    for f in done.findings:
        print(f"  {'overridden' if f.blocking else 'note'}: {f.message}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from medui.errors import MedUIError
    from medui.io.loader import load
    from medui.usecases.diagnose import load_model, overlay, score
    from medui.usecases.models import default_model, model_warning, status

    root = Path(args.dir) if args.dir else None
    try:
        models = status(root)
        chosen = args.model
        if not chosen:
            fallback = default_model(root)
            if fallback is None:
                print("error: no model is registered; train the demo model: python -m medui demo-model",
                      file=sys.stderr)
                return 2
            chosen = fallback.entry.id
        model = load_model(chosen, root)
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    entry = model.entry
    state = next(s for s in models if s.entry.id == entry.id)
    warning = model_warning(state)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path in args.paths:
        loaded = load([path])
        skipped += [{"file": k.file, "reason": k.reason} for k in loaded.skipped]
        for k, series in enumerate(loaded.series):
            dx = score(series, model)
            pred = dx.prediction
            item: dict[str, Any] = {
                "source": path if len(loaded.series) == 1 else f"{path} [series {k + 1}: {series.summary()}]",
                **pred.to_json(), **_slice_json(dx), "overlays": []}
            if warning:  # every result of a candidate or unevaluated model says so
                item["warnings"] = [warning, *item.get("warnings", [])]
            if args.cam:
                out_dir = Path(args.out)
                out_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(path).name.replace(".", "_") + (f"_s{k + 1}" if len(loaded.series) > 1 else "")
                for method in args.cam:
                    result = overlay(dx, dx.peak_slice, method)
                    target = out_dir / f"{stem}_{method.replace('+', 'p')}_slice{dx.peak_slice + 1}.png"
                    target.write_bytes(result.png())
                    item["overlays"].append(str(target))
                    if result.flat:  # the model's evidence is flat on this image: the PNG shows no map
                        item.setdefault("flat_overlays", []).append(method)
                item["explained_class"] = dx.class_names[dx.predicted_class]
            results.append(item)
    doc: dict[str, Any] = {"model": {"name": entry.card.name, "version": entry.card.version, "id": entry.id,
                                     "task": state.task, "status": state.label.split(" ")[0],
                                     "evaluated": state.evaluated, "demo": entry.card.demo},
                           "results": results}
    if warning:
        doc["model"]["warning"] = warning
    if skipped:
        doc["skipped"] = skipped
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        demo = " — DEMO, synthetic data" if entry.card.demo else ""
        print(f"Model {entry.id} ({state.label} for '{state.task}', threshold {entry.card.threshold:.3f}){demo}")
        if warning:
            print(f"  warning: {warning}")
        for r in results:
            probs = ", ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
            print(f"  {r['source']}: {r['label']} ({probs}; margin {r['margin']:+.3f})")
            for w in r.get("warnings", []):
                print(f"    warning: {w}")
            if "slice_scores" in r:
                print(f"    {len(r['slice_scores'])} slices, peak at {r['peak_slice_label']}")
            for o in r["overlays"]:
                print(f"    overlay: {o}")
        for s in skipped:
            print(f"  skipped {s['file']}: {s['reason']}")
        print("Decision support only, not a medical device.")
    return 0 if results else 1


def _slice_json(dx: Diagnosis) -> dict[str, Any]:
    """Slice scores, peak and positions in the Viewer's numbering (`display_order`): index 0 is the
    Viewer's slice 1; `slice_positions_mm` along `slice_axis` (null without geometry)."""
    from medui.reading.display import slice_axis, slice_label, slice_positions_mm

    scores = dx.slice_scores
    if scores is None:
        return {}
    series = dx.series
    return {"slice_scores": [round(v, 6) for v in scores], "peak_slice": dx.peak_slice,
            "peak_slice_label": slice_label(series, dx.peak_slice), "slice_axis": slice_axis(series),
            "slice_positions_mm": None if (pos := slice_positions_mm(series)) is None else [round(p, 3) for p in pos],
            "slice_numbering": "the Viewer's: index 0 is slice 1 of the native plane as the Viewer shows it"}


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medui",
        description="MedUI: AI-assisted review of medical images (decision support, not a medical device).")
    parser.add_argument("--version", action="version", version=f"MedUI {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="describe the image series in files, folders or zip archives",
                          description="Read DICOM (single, series, multi-frame, compressed), NIfTI, PNG/JPEG/TIFF "
                                      "and zip archives; print each series found and every file skipped.")
    info.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or zip archive")
    info.add_argument("--json", action="store_true", help="print one JSON document")
    info.set_defaults(func=_cmd_info)
    models = sub.add_parser("models", help="list the model registry, newest first; add or delete a model")
    models.add_argument("--json", action="store_true")
    models.add_argument("--dir", default=None, help="registry folder (default: MEDUI_MODELS or ./models)")
    change = models.add_mutually_exclusive_group()
    change.add_argument("--add", metavar="MODEL.keras", help="validate and register a model (needs --card)")
    change.add_argument("--delete", metavar="ID", help="delete a registered model (name-vN)")
    models.add_argument("--card", metavar="CARD.json", help="the model card of --add")
    models.set_defaults(func=_cmd_models)
    promote = sub.add_parser("promote", help="promote a model for its task (the default for Diagnose and predict)",
                             description="A model is promoted when its held-out AUC exists, its AUC 95% CI excludes "
                                         "0.5 and it is not below its parent's AUC; otherwise only with --override. "
                                         "Every promotion is recorded in the registry's audit.jsonl.")
    promote.add_argument("name", help="model id (name-vN) or name (its newest version)")
    promote.add_argument("--override", metavar="REASON", default=None,
                         help="promote although the gate refuses, for this recorded reason")
    promote.add_argument("--dir", default=None, help="registry folder")
    promote.set_defaults(func=_cmd_promote)
    from medui.ai.saliency import METHODS

    predict = sub.add_parser("predict", help="score scans with a model, optionally with saliency overlays")
    predict.add_argument("paths", nargs="+", metavar="PATH")
    predict.add_argument("--model", default=None,
                         help="model id (name-vN) or name (its newest version); default: the promoted model "
                              "(see python -m medui models)")
    predict.add_argument("--cam", nargs="*", choices=list(METHODS), default=None, metavar="METHOD",
                         help=f"saliency method(s): {', '.join(METHODS)}")
    predict.add_argument("--out", default="medui-overlays", help="folder for overlay PNGs")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dir", default=None, help="registry folder")
    predict.set_defaults(func=_cmd_predict)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "add", None) and not args.card:
        parser.error("models --add needs --card CARD.json")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))
