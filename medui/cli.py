"""Command line: `python -m medui COMMAND ...`. Every capability of the pages is reachable here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from medui import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from medui.io import load

    result = load(args.paths)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.series else 1
    for k, s in enumerate(result.series, 1):
        lo, hi = s.value_range
        sp = s.spacing
        print(f"Series {k}: {s.summary()}")
        print(f"  modality:     {s.modality}   format: {s.source_format}")
        print(f"  description:  {s.description or '-'}")
        print(f"  shape:        {' x '.join(str(n) for n in s.pixels.shape)} (slices, rows, cols{', RGB' if s.is_color else ''})")
        print(f"  spacing:      {sp[0]:.4g} x {sp[1]:.4g} x {sp[2]:.4g} mm (slice, row, col)")
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
    if not result.series:
        print("No image series found.", file=sys.stderr)
        return 1
    return 0


def _cmd_demo_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medui.demo import train_demo

    train_demo(Path(args.out), n_train=args.n, epochs=args.epochs, seed=args.seed,
               log=lambda m: print(m, flush=True))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from medui.models.registry import list_models

    entries = list_models(args.dir)
    rows = [{"id": e.id, "name": e.card.name, "version": e.card.version, "classes": e.card.class_names,
             "created": e.card.created, "threshold": e.card.threshold, "architecture": e.card.architecture,
             "input": e.card.input_size + [e.card.channels], "auc": e.card.metrics.get("auc"), "demo": e.card.demo,
             "parent": e.card.parent, "path": str(e.path)} for e in entries]
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    if not rows:
        print("No models registered. Train the demo model: python -m medui demo-model")
        return 0
    for r in rows:
        auc = f"AUC {r['auc']:.3f}" if isinstance(r["auc"], (int, float)) else "AUC -"
        tag = "  [demo, synthetic data]" if r["demo"] else ""
        print(f"{r['id']:<32} {r['architecture']:<16} {'/'.join(r['classes']):<24} thr {r['threshold']:.3f}  "
              f"{auc}  {r['created']}{tag}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medui.errors import MedUIError
    from medui.io import load
    from medui.service import explain_series, load_model

    try:
        entry, predictor, explainer = load_model(args.model, args.dir)
    except MedUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results, skipped = [], []
    for path in args.paths:
        loaded = load([path])
        skipped += [{"file": k.file, "reason": k.reason} for k in loaded.skipped]
        for k, series in enumerate(loaded.series):
            pred = predictor.predict(series)
            item = {"source": path if len(loaded.series) == 1 else f"{path} [series {k + 1}: {series.summary()}]",
                    **pred.to_json(), "overlays": []}
            if args.cam:
                out_dir = Path(args.out)
                out_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(path).name.replace(".", "_") + (f"_s{k + 1}" if len(loaded.series) > 1 else "")
                for method in args.cam:
                    png = explain_series(series, pred.peak_slice, method, predictor, explainer)
                    target = out_dir / f"{stem}_{method.replace('+', 'p')}_slice{pred.peak_slice + 1}.png"
                    target.write_bytes(png)
                    item["overlays"].append(str(target))
            results.append(item)
    doc = {"model": {"name": entry.card.name, "version": entry.card.version}, "results": results}
    if skipped:
        doc["skipped"] = skipped
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"Model {entry.id} (threshold {entry.card.threshold:.3f}){' — DEMO, synthetic data' if entry.card.demo else ''}")
        for r in results:
            probs = ", ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
            print(f"  {r['source']}: {r['label']} ({probs}; margin {r['margin']:+.3f})")
            for w in r.get("warnings", []):
                print(f"    warning: {w}")
            if "slice_scores" in r:
                print(f"    {len(r['slice_scores'])} slices, peak at slice {r['peak_slice'] + 1}")
            for o in r["overlays"]:
                print(f"    overlay: {o}")
        for s in skipped:
            print(f"  skipped {s['file']}: {s['reason']}")
        print("Decision support only, not a medical device.")
    return 0 if results else 1


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
    models = sub.add_parser("models", help="list the model registry, newest first")
    models.add_argument("--json", action="store_true")
    models.add_argument("--dir", default=None, help="registry folder (default: MEDUI_MODELS or ./models)")
    models.set_defaults(func=_cmd_models)
    from medui.explain import METHODS

    predict = sub.add_parser("predict", help="score scans with a model, optionally with saliency overlays")
    predict.add_argument("paths", nargs="+", metavar="PATH")
    predict.add_argument("--model", required=True, help="model id (name-vN) or name (its newest version)")
    predict.add_argument("--cam", nargs="*", choices=list(METHODS), default=None, metavar="METHOD",
                         help=f"saliency method(s): {', '.join(METHODS)}")
    predict.add_argument("--out", default="medui-overlays", help="folder for overlay PNGs")
    predict.add_argument("--json", action="store_true")
    predict.add_argument("--dir", default=None, help="registry folder")
    predict.set_defaults(func=_cmd_predict)
    demo = sub.add_parser("demo-model", help="train the demo model on synthetic chest phantoms (CPU, minutes)")
    demo.add_argument("--out", default="models", help="model registry folder (default: models)")
    demo.add_argument("--n", type=int, default=1600, help="training phantoms (default 1600)")
    demo.add_argument("--epochs", type=int, default=12)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo_model)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))
