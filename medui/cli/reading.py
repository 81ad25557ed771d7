"""Command line, Reading scans: `info`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    pass

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


def add_commands(sub: Any) -> None:
    """This module's subcommands on the `python -m medui` parser."""
    info = sub.add_parser("info", help="describe the image series in files, folders or zip archives",
                          description="Read DICOM (single, series, multi-frame, compressed), NIfTI, PNG/JPEG/TIFF "
                                      "and zip archives; print each series found and every file skipped.")
    info.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or zip archive")
    info.add_argument("--json", action="store_true", help="print one JSON document")
    info.set_defaults(func=_cmd_info)
