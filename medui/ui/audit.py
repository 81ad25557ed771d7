"""Audit page widgets: filters, the table of events (newest first) and the CSV export."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from medui.accounts import audit
from medui.accounts.actor import Actor
from medui.errors import MedUIError
from medui.usecases.audit import events, export_csv


def filters() -> audit.Query:
    """The page's filters as a query: days (UTC), user, actions, outcome, target id."""
    today = datetime.now(UTC).date()
    c1, c2, c3 = st.columns([2, 2, 3])
    with c1:
        span = st.date_input("Days (UTC)", (today - timedelta(days=7), today), key="audit.days",
                             max_value=today + timedelta(days=1))
    with c2:
        user = st.text_input("User (subject or name contains)", key="audit.user")
        outcome = st.selectbox("Outcome", ["", *audit.OUTCOMES], key="audit.outcome",
                               format_func=lambda o: o or "any")
    with c3:
        actions = st.multiselect("Actions", audit.ACTIONS, key="audit.actions", placeholder="every action")
        target = st.text_input("Target id contains (Study/Series UID, model, job)", key="audit.target")
    days = list(span) if isinstance(span, (list, tuple)) else [span]
    first: date | None = days[0] if days else None
    last: date | None = days[-1] if days else None
    return audit.Query(since=datetime.combine(first, time.min, UTC) if first else None,
                       until=datetime.combine(last, time.max, UTC) if last else None, user=user,
                       actions=tuple(actions), outcome=outcome, target=target, limit=5000)


def table(query: audit.Query, who: Actor) -> None:
    """The matching events and 'Download CSV' (the export is recorded when it is downloaded)."""
    try:
        rows = events(query, who)
    except MedUIError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.caption(f"{len(rows)} event(s), newest first" + (" (the first 5000)" if len(rows) >= query.limit else "")
               + ". Rows are append-only; they name users and ids (Study/Series UIDs, models, jobs), never patients.")
    st.dataframe([{**{k: v for k, v in r.to_json().items() if k != "details"},
                   "details": ", ".join(f"{k}={v}" for k, v in sorted(r.details.items()))} for r in rows],
                 hide_index=True, width="stretch", key="audit.table")
    # The CSV is made (and the export recorded) when the button is clicked, not on every run.
    st.download_button("Download CSV", lambda: export_csv(query, who), file_name="medui-audit.csv", mime="text/csv",
                       key="audit.download", icon=":material/download:", on_click="ignore")
