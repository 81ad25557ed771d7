"""Command line, The registry and scoring: `models`, `promote`, `predict`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from medui.usecases.diagnose import Diagnosis

T = TypeVar("T")


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
            from medui.usecases.models import register_file

            card = Path(args.card)
            entry = register_file(Path(args.add), Path(args.add).name, card.read_bytes(), card_name=card.name,
                                  root=root)
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


def _cmd_register(args: argparse.Namespace) -> int:
    """`models register FILE.keras [--card CARD.json] [--name NAME]`: what the Models page's add form does."""
    from medui.errors import MedUIError
    from medui.usecases.models import CardFields, register_file

    model = Path(args.file)
    try:
        if not model.is_file():
            print(f"error: {model.name} is not a file; give the path of a .keras file", file=sys.stderr)
            return 2
        card: bytes | CardFields | None = None
        if args.card:
            card = Path(args.card).read_bytes()
        elif args.classes or args.cam_layer or args.threshold is not None or args.training_data:
            card = CardFields(name=args.name or model.stem,
                              class_names=CardFields.parse_classes(args.classes or "normal,abnormal"),
                              cam_layer=args.cam_layer or "",
                              threshold=0.5 if args.threshold is None else args.threshold,
                              training_data=args.training_data or "")
        entry = register_file(model, model.name, card, card_name=Path(args.card).name if args.card else "the card",
                              root=Path(args.dir) if args.dir else None, name=args.name)
    except (MedUIError, OSError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(f"registered {entry.id} as a candidate: {entry.path}\n"
          f"It is not used by default until promoted: python -m medui promote {entry.id}")
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
                # named by the result's number, never by the input (a file name can carry a patient's name):
                # the output below says which input each number is
                stem = f"scan{sum(1 for r in results if 'overlay_name' in r) + 1:03d}"
                item["overlay_name"] = stem
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
                print(f"    overlay ({r['overlay_name']} = this scan): {o}")
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


def add_commands(sub: Any) -> None:
    """This module's subcommands on the `python -m medui` parser."""
    models = sub.add_parser("models", help="list the model registry, newest first; add or delete a model")
    models.add_argument("--json", action="store_true")
    models.add_argument("--dir", default=None, help="registry folder (default: MEDUI_MODELS or ./models)")
    change = models.add_mutually_exclusive_group()
    change.add_argument("--add", metavar="MODEL.keras", help="validate and register a model (needs --card)")
    change.add_argument("--delete", metavar="ID", help="delete a registered model (name-vN)")
    models.add_argument("--card", metavar="CARD.json", help="the model card of --add")
    models.set_defaults(func=_cmd_models)
    actions = models.add_subparsers(dest="action", metavar="ACTION")
    register = actions.add_parser(
        "register", help="check, validate and register a .keras file as a candidate (as the Models page does)",
        description="The file is checked before Keras opens it (only the members a .keras file has, no absolute "
                    "or '..' names, small JSON members, weights up to MEDUI_MAX_MODEL_MB), loaded in safe mode, "
                    "validated against its card and registered as a candidate. Without --card the card is made "
                    "from the model itself (input size, channels, last feature-map layer) and the options below.")
    register.add_argument("file", metavar="FILE.keras")
    register.add_argument("--card", metavar="CARD.json", help="the model card (as MedUI writes it beside a model)")
    register.add_argument("--name", default=None, help="model name (default: the card's, else the file's name); "
                                                       "the next free version of it is used")
    register.add_argument("--classes", default=None, help="without --card: class names, negative first "
                                                          "(default: normal,abnormal)")
    register.add_argument("--cam-layer", default=None, help="without --card: the CAM layer (default: the model's "
                                                            "last feature-map layer)")
    register.add_argument("--threshold", type=float, default=None, help="without --card: decision threshold (0.5)")
    register.add_argument("--training-data", default=None, help="without --card: what it was trained on")
    register.add_argument("--dir", default=argparse.SUPPRESS,  # `models --dir D register F` keeps D
                          help="registry folder (default: MEDUI_MODELS or ./models)")
    register.set_defaults(func=_cmd_register)
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
    predict.add_argument("--out", default="medui-overlays",
                         help="folder for overlay PNGs, named scanNNN_<method>_slice<k>.png by the number of the "
                              "result (never after the input file); the output says which input each is")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dir", default=None, help="registry folder")
    predict.set_defaults(func=_cmd_predict)
