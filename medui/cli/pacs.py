"""Command line, hospital connection: `pacs echo|search|get|send` and `report` (AI results as DICOM + PDF)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medui.errors import MedUIError

if TYPE_CHECKING:
    from medui.pacs.model import Node


def _quiet() -> None:
    """pynetdicom logs every association at INFO; the command line prints its own results."""
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; expected YYYY-MM-DD") from exc


def _fail(exc: MedUIError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": str(exc)}))
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _node(args: argparse.Namespace) -> Node | int:
    """The node `--node` names (quietly), or the exit code after saying why it cannot be used."""
    from medui.usecases import pacs

    _quiet()
    try:
        return pacs.node(args.node)
    except MedUIError as exc:
        return _fail(exc, args.json)


def _cmd_echo(args: argparse.Namespace) -> int:
    from medui.usecases import pacs

    node = _node(args)
    if isinstance(node, int):
        return node
    checks = pacs.echo(node)
    if args.json:
        print(json.dumps({"node": node.name, "checks": [{"protocol": p, "ok": ok, "message": m}
                                                         for p, ok, m in checks]}, indent=2))
    else:
        print(node.describe())
        for proto, ok, message in checks:
            print(f"  {proto}: {'ok' if ok else 'FAILED'} - {message}")
    return 0 if checks and all(ok for _, ok, _ in checks) else 1


def _cmd_search(args: argparse.Namespace) -> int:
    from medui.pacs.model import PAGE_SIZE, StudyQuery
    from medui.usecases import pacs

    _quiet()
    try:
        node = pacs.node(args.node)
        if args.study:
            found = pacs.series(node, args.study, args.protocol)
            if args.json:
                print(json.dumps({"node": node.name, "study": args.study,
                                  "series": [vars(s) for s in found]}, indent=2))
            for s in [] if args.json else found:
                print(f"{s.uid}  {s.modality:4} #{s.number or '-':>4}  {s.n_instances or '?':>5} inst.  "
                      f"{s.description}")
            return 0
        query = StudyQuery(args.patient_id, args.patient_name, args.accession, args.date_from, args.date_to,
                           args.modality)
        page = pacs.search(node, query, (args.page - 1) * PAGE_SIZE, PAGE_SIZE, args.protocol)
    except MedUIError as exc:
        return _fail(exc, args.json)
    if args.json:
        print(json.dumps({"node": node.name, "page": args.page, "more": page.more,
                          "studies": [vars(s) for s in page.items]}, indent=2))
        return 0
    for st in page.items:
        print(f"{st.uid}  {st.date or '-':8}  {st.modalities or '-':8}  {st.n_instances or '?':>5} inst.  "
              f"{st.accession or '-'}  {st.description}")
    print(f"page {args.page}: {len(page.items)} study(ies)" + ("; more on the next page (--page)" if page.more else ""))
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    from medui.usecases import pacs

    node = _node(args)
    if isinstance(node, int):
        return node
    got = pacs.retrieve(node, args.study, args.series, using=args.protocol, decode_ahead=not args.out)
    doc: dict[str, Any] = {"node": node.name, "retrieved": len(got.items), "seconds": round(got.seconds, 3),
                           "complete": got.complete, "error": got.error}
    if args.out:
        doc["files"] = [str(p) for p in pacs.write_folder(got, Path(args.out))]
    else:
        loaded = pacs.load_retrieved(got)
        doc["series"] = [s.summary() for s in loaded.series]
        doc["skipped"] = [{"file": k.file, "reason": k.reason} for k in loaded.skipped]
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{node.name}: {got.summary()}")
        for line in doc.get("series", []):
            print(f"  series: {line}")
        for sk in doc.get("skipped", []):
            print(f"  skipped: {sk['file']}: {sk['reason']}")
        if args.out:
            print(f"  written to {args.out}")
    if got.error:
        print(f"error: {got.error}", file=sys.stderr)
    return 0 if got.complete and got.items else 1


def _cmd_send(args: argparse.Namespace) -> int:
    import pydicom

    from medui.usecases import pacs

    _quiet()
    try:
        node = pacs.node(args.node)
        datasets = []
        for path in args.paths:
            try:
                datasets.append(pydicom.dcmread(path))
            except Exception as exc:
                raise MedUIError(f"{path} is not a readable DICOM file ({type(exc).__name__}); "
                                 "send only DICOM files") from exc
        stored = pacs.send(node, datasets, args.protocol)
    except MedUIError as exc:
        return _fail(exc, args.json)
    if args.json:
        print(json.dumps({"node": node.name, "stored": stored}, indent=2))
    else:
        print(f"{node.name}: stored {len(stored)} object(s)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from medui.usecases import pacs, results
    from medui.usecases.diagnose import load_model

    _quiet()
    try:
        node = pacs.node(args.send) if args.send else None
        model = load_model(args.model, Path(args.dir) if args.dir else None)
        items = results.read_inputs(args.paths)
        scored, loaded = results.report(items, model, args.method, None if args.slice is None else args.slice - 1)
    except MedUIError as exc:
        return _fail(exc, args.json)
    rows: list[dict[str, Any]] = []
    errors = [f"{s.series.summary()}: {s.error}" for s in scored if s.results is None]
    sent: list[str] = []
    for k, item in enumerate(scored, 1):
        if item.results is None:
            continue
        folder = Path(args.out) / (f"series-{k}" if len(scored) > 1 else "")
        rows += results.write(item.results, folder)
        errors += item.results.notes
        if node is not None:
            try:
                sent += results.send(item.results, node, args.protocol)
            except MedUIError as exc:
                errors.append(str(exc))
    if args.json:
        doc: dict[str, Any] = {"objects": rows, "errors": errors,
                               "skipped": [{"file": k.file, "reason": k.reason} for k in loaded.skipped]}
        if node is not None:
            doc["sent"] = {"node": node.name, "stored": sent}
        print(json.dumps(doc, indent=2))
    else:
        for row in rows:
            print(f"{row['kind']:4} {row['path']}  ({row['sop_instance_uid']})")
        if node is not None:
            print(f"sent {len(sent)} object(s) to {node.name}")
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
    if not loaded.series:
        print("No image series found.", file=sys.stderr)
        return 1
    return 0 if rows and not errors else 1


def add_commands(sub: Any) -> None:
    """This module's subcommands on the `python -m medui` parser."""
    from medui.ai.saliency import METHODS

    pacs = sub.add_parser("pacs", help="a PACS: test the connection, search, retrieve, send (DICOMweb or DIMSE)",
                          description="Nodes come from .streamlit/pacs.toml, MEDUI_PACS_CONFIG or MEDUI_DICOMWEB_URL "
                                      "(the node 'default'). See README, 'Hospital connection'.")
    verbs = pacs.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)

    def verb(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, help=help_text)
        p.add_argument("--node", default=None, help="the node's name (default: 'default')")
        p.add_argument("--json", action="store_true", help="print one JSON document")
        p.set_defaults(func=func)
        if name != "echo":
            p.add_argument("--protocol", choices=["dicomweb", "dimse"], default=None,
                           help="default: DICOMweb when the node has it, else DIMSE")
        return p

    verb("echo", "test the connection (C-ECHO, QIDO-RS ping)", _cmd_echo)
    search = verb("search", "search studies (50 a page), or list a study's series (--study)", _cmd_search)
    search.add_argument("--patient-id", default="")
    search.add_argument("--patient-name", default="", help="wildcards * and ?, e.g. 'DOE^J*'")
    search.add_argument("--accession", default="")
    search.add_argument("--from", dest="date_from", type=_date, default=None, metavar="YYYY-MM-DD")
    search.add_argument("--to", dest="date_to", type=_date, default=None, metavar="YYYY-MM-DD")
    search.add_argument("--modality", default="")
    search.add_argument("--page", type=int, default=1)
    search.add_argument("--study", default=None, metavar="STUDY_UID", help="list this study's series instead")
    get = verb("get", "retrieve a study or series (WADO-RS or C-GET) and load it, or write it (--out)", _cmd_get)
    get.add_argument("study", metavar="STUDY_UID")
    get.add_argument("--series", default=None, metavar="SERIES_UID")
    get.add_argument("--out", default=None, metavar="DIR", help="write the instances here instead of loading them")
    send = verb("send", "store DICOM files on the PACS (STOW-RS or C-STORE)", _cmd_send)
    send.add_argument("paths", nargs="+", metavar="PATH")

    report = sub.add_parser("report", help="AI results as DICOM SR, SEG, SC and a PDF report (and send them)",
                            description="Score each DICOM series with a model and write, in the source's study, a "
                                        "TID 1500 SR, a SEG of the saliency, an SC of the overlay and a PDF report "
                                        "(also as Encapsulated PDF). Decision support only, not a medical device.")
    report.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders")
    report.add_argument("--model", required=True, help="registered model id or name")
    report.add_argument("--out", required=True, metavar="DIR")
    report.add_argument("--send", default=None, metavar="NODE", help="also store the objects on this PACS node")
    report.add_argument("--protocol", choices=["dicomweb", "dimse"], default=None)
    report.add_argument("--method", choices=list(METHODS), default="gradcam", help="saliency method")
    report.add_argument("--slice", type=int, default=None, help="slice of the overlay (1-based; default: peak)")
    report.add_argument("--dir", default=None, help="registry folder")
    report.add_argument("--json", action="store_true", help="list each object written as JSON")
    report.set_defaults(func=_cmd_report)
