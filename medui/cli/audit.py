"""Command line, The audit trail: `audit` lists who did what (`--json`, `--csv`), filtered like the Audit page."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """'2026-11-30', '2026-11-30T08:00', '2026-11-30T08:00+01:00' (no zone: UTC), or relative to now:
    '30m', '24h', '7d', '2w'. ValueError says what is accepted."""
    text = text.strip()
    found = _RELATIVE.match(text)
    if found:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a time; give an ISO date or time (2026-11-30, 2026-11-30T08:00, "
                         "with +01:00 for a zone; UTC otherwise) or a span back from now (30m, 24h, 7d, 2w)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cmd_audit(args: argparse.Namespace) -> int:
    from medui.accounts import audit
    from medui.errors import MedUIError
    from medui.usecases.audit import events, export_csv

    try:
        query = audit.Query(since=parse_time(args.since) if args.since else None,
                            until=parse_time(args.until) if args.until else None, user=args.user or "",
                            actions=tuple(args.action or ()), outcome=args.outcome or "", target=args.target or "",
                            limit=args.limit)
        if args.csv:  # an export, recorded as the Audit page's
            sys.stdout.write(export_csv(query))
            return 0
        rows = events(query)
    except (ValueError, MedUIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        for r in rows:
            print(f"{r.time.isoformat(timespec='seconds')}  {r.subject:<24} {r.action:<15} {r.outcome:<8} "
                  f"{r.target}")
        print(f"{len(rows)} event(s), newest first" + (f" (at most {args.limit})" if len(rows) >= args.limit else ""),
              file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    from medui.accounts.actions import ACTIONS, OUTCOMES

    p = sub.add_parser("audit", help="who did what, when (the audit trail in MEDUI_DB_URL)",
                       description="List the audit trail, newest first: sign-ins, series opened (by Study/Series "
                                   "UID), scores, explanations, jobs, model registrations and deletions, settings.")
    p.add_argument("--since", help="from this time: ISO date/time (UTC unless a zone is given) or 30m, 24h, 7d, 2w")
    p.add_argument("--until", help="up to this time (same forms as --since)")
    p.add_argument("--user", help="subject or display name contains this")
    p.add_argument("--action", action="append", choices=ACTIONS, help="only this action (repeatable)")
    p.add_argument("--outcome", choices=OUTCOMES)
    p.add_argument("--target", help="target ids contain this (a Study/Series UID, model or job id)")
    p.add_argument("--limit", type=int, default=10000, help="at most this many rows (default 10000)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON list")
    out.add_argument("--csv", action="store_true", help="CSV, as the Audit page exports it")
    p.set_defaults(func=_cmd_audit)
