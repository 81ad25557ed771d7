"""Who does something: the small typed identity every use case receives (no Streamlit here).

The pages build it from the sign-in (`medui.ui.auth`); the command line acts as the operating-system
user with every role (whoever runs it already has the server's files). `acting_as` lets the app shell
name the actor once per script run: use cases called without an explicit `actor` take it from there
(a `ContextVar`, so each session's script thread sees its own user, never another's).
"""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from medui.accounts.roles import ROLES, permissions_of, role_for
from medui.errors import NotAllowedError


@dataclass(frozen=True)
class Actor:
    """A user: the identity provider's subject (stable id), a display name, and MedUI roles."""

    subject: str
    name: str
    roles: frozenset[str]
    via: str = "app"  # 'app', 'cli' or 'job'

    @property
    def permissions(self) -> frozenset[str]:
        return permissions_of(self.roles)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def label(self) -> str:
        """'Dr Ada Lovelace (ada@hospital.org)' or just the subject."""
        return self.subject if not self.name or self.name == self.subject else f"{self.name} ({self.subject})"

    def to_json(self) -> dict[str, str]:
        """What job folders and model cards record: subject and display name (never roles or tokens)."""
        return {"subject": self.subject, "name": self.name}


LOCAL_SUBJECT = "local"
LOCAL = Actor(LOCAL_SUBJECT, "local user", frozenset(ROLES))  # single-user mode: no sign-in configured
UNATTRIBUTED = Actor("unattributed", "unattributed (called without a user)", frozenset(), via="internal")


def cli_actor() -> Actor:
    """The operating-system user running `python -m medui`, with every role."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"cli:{user}", user, frozenset(ROLES), via="cli")


_acting: ContextVar[Actor | None] = ContextVar("medui_acting_actor", default=None)


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Within the block, use cases called without an actor act for `actor`."""
    token = _acting.set(actor)
    try:
        yield actor
    finally:
        _acting.reset(token)


def current(actor: Actor | None = None) -> Actor | None:
    """`actor` when given, else the one `acting_as` named for this context (None: no user known)."""
    return actor if actor is not None else _acting.get()


def require(actor: Actor | None, permission: str, what: str) -> None:
    """NotAllowedError when a known actor lacks `permission` (None: internal callers, not checked)."""
    if actor is not None and not actor.can(permission):
        roles = ", ".join(sorted(actor.roles)) or "no MedUI role"
        raise NotAllowedError(f"not allowed: {what} needs the {role_for(permission)} role; {actor.label} has "
                              f"{roles}. Ask an administrator for the role if you need it")


def require_owner(actor: Actor | None, what: str, started_by: dict[str, str]) -> None:
    """NotAllowedError when a known actor acts on `what` (e.g. 'job X') that someone else started
    (`started_by`: {"subject", "name"}) and lacks 'cancel-any-job' (administrators)."""
    owner = started_by.get("subject")
    if actor is not None and owner and owner != actor.subject and not actor.can("cancel-any-job"):
        raise NotAllowedError(f"not allowed: {what} was started by {started_by.get('name') or owner}; "
                              "only they or an administrator can cancel it")
