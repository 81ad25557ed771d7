"""Audit trail use cases, for the Audit page and `python -m medui audit`: list and export events."""

from __future__ import annotations

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require


def events(query: audit.Query = audit.Query(), actor: Actor | None = None) -> list[audit.AuditEvent]:
    """The events matching `query`, newest first. Needs the 'audit' permission (administrators)."""
    require(current(actor), "audit", "reading the audit trail")
    return audit.events(query)


def export_csv(query: audit.Query = audit.Query(), actor: Actor | None = None) -> str:
    """The events matching `query` as CSV; the export itself is recorded."""
    who = current(actor)
    with audit.attempt(audit.EXPORT_AUDIT, who, "audit trail") as step:
        require(who, "audit", "exporting the audit trail")
        rows = audit.events(query)
        step.details["rows"] = len(rows)
    return audit.to_csv(rows)
