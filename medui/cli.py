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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))
