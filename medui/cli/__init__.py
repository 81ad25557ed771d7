"""Command line: `python -m medui COMMAND ...`. Every capability of the pages is reachable here.

One module per area: `reading` (info), `models` (models, promote, predict), `training` (train,
train-job, evaluate, datasets, demo-model), `pacs` (pacs echo|search|get|send, report), `audit`
(audit), `batch` (batch, batch-job, worklist). Every command acts as the operating-system user with
every role, and the use cases record that user in the audit trail.
Heavy imports (TensorFlow) happen inside the commands, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from medui import __version__
from medui.accounts.actor import acting_as, cli_actor
from medui.cli import audit, batch, models, pacs, reading, training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m medui",
        description="MedUI: AI-assisted review of medical images (decision support, not a medical device).")
    parser.add_argument("--version", action="version", version=f"MedUI {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in (reading, models, training, pacs, batch, audit):
        area.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "add", None) and not args.card:
        parser.error("models --add needs --card CARD.json")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    with acting_as(cli_actor()):  # use cases record the operating-system user in the audit trail
        return int(args.func(args))
