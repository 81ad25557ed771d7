"""MedUI's roles, what each allows, and the map from an identity provider's claim to them.

Roles are cumulative: an ml-engineer may do all a clinician may, an admin all an ml-engineer may.
Pages are gated by name (the page file's stem: `pages/train.py` is 'train'); a page this map does not
know is refused to everyone but an admin, so a new page is closed until it is given a permission here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CLINICIAN, ML_ENGINEER, ADMIN = "clinician", "ml-engineer", "admin"
ROLES = (CLINICIAN, ML_ENGINEER, ADMIN)  # each includes what the ones before it allow

# What each role adds to the one before it.
_ADDS: dict[str, tuple[str, ...]] = {
    CLINICIAN: ("viewer", "diagnose", "worklist", "report", "export-result", "send-result"),
    ML_ENGINEER: ("train", "models", "evaluate", "register-model", "promote-model", "cancel-job"),
    ADMIN: ("delete-model", "pacs-settings", "audit", "cancel-any-job"),
}
PERMISSIONS: tuple[str, ...] = tuple(p for role in ROLES for p in _ADDS[role])

# The permission each page needs (by the page's URL path, the file's stem).
PAGES: dict[str, str] = {
    "viewer": "viewer", "diagnose": "diagnose", "worklist": "worklist", "train": "train", "models": "models",
    "pacs": "pacs-settings", "audit": "audit",
}

DEFAULT_CLAIM = "roles"


def permissions_of(roles: frozenset[str] | set[str]) -> frozenset[str]:
    """Everything the given MedUI roles allow together."""
    out: set[str] = set()
    for level, role in enumerate(ROLES):
        if role in roles:
            out.update(p for r in ROLES[:level + 1] for p in _ADDS[r])
    return frozenset(out)


def page_permission(page: str) -> str:
    """The permission page `page` needs (unknown pages: 'audit', i.e. administrators only)."""
    return PAGES.get(page, "audit")


def role_for(permission: str) -> str:
    """The least role that allows `permission` (for messages: 'needs the ml-engineer role')."""
    for role in ROLES:
        if permission in _ADDS[role]:
            return role
    raise KeyError(f"unknown permission {permission!r}; known: {', '.join(PERMISSIONS)}")


@dataclass(frozen=True)
class RoleResult:
    """The MedUI roles a sign-in carries, the claim values that were ignored, and, when it gives no
    role at all, why (`problem`, said to the user as it is)."""

    roles: frozenset[str]
    ignored: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class RoleMap:
    """Which claim of the ID token holds the user's roles or groups (a dotted path for nested claims,
    e.g. Keycloak's `realm_access.roles`), and how its values map to MedUI roles.

    Without a configured `names`, the values 'clinician', 'ml-engineer' and 'admin' map to themselves;
    with one, only the configured names count (a hospital group that happens to be called 'admin'
    gives nothing unless mapped)."""

    claim: str = DEFAULT_CLAIM
    names: Mapping[str, str] = field(default_factory=lambda: {r: r for r in ROLES})

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> RoleMap:
        """From secrets.toml's `[medui_auth]` section: `roles_claim = "..."` and a `[medui_auth.roles]`
        table of identity-provider value -> MedUI role. ValueError names a role MedUI does not have."""
        if not config:
            return cls()
        claim = str(config.get("roles_claim") or DEFAULT_CLAIM).strip()
        raw = config.get("roles")
        if raw is None:
            return cls(claim=claim)
        if not isinstance(raw, Mapping):
            raise ValueError(f"[medui_auth.roles] must be a table of identity-provider value = MedUI role, "
                             f"found {type(raw).__name__}")
        bad = {str(k): str(v) for k, v in raw.items() if str(v) not in ROLES}
        if bad:
            raise ValueError(f"[medui_auth.roles] maps {bad} to unknown MedUI roles; allowed: {', '.join(ROLES)}")
        return cls(claim=claim, names={str(k): str(v) for k, v in raw.items()})

    def claim_values(self, claims: Mapping[str, Any]) -> list[str] | None:
        """The claim's values (a list, or one string split at spaces and commas); None when absent."""
        value: Any = claims
        for part in self.claim.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        if isinstance(value, str):
            return [v for v in value.replace(",", " ").split() if v]
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value if isinstance(v, (str, int))]
        return []

    def resolve(self, claims: Mapping[str, Any]) -> RoleResult:
        """The MedUI roles of a signed-in user. A missing claim gives no access with a message saying
        which claim was expected; values that map to no MedUI role are ignored (and listed)."""
        values = self.claim_values(claims)
        if values is None:
            return RoleResult(frozenset(), problem=(
                f"your sign-in carries no '{self.claim}' claim, so MedUI cannot tell your role. Ask the "
                f"administrator to assign you a MedUI role ({', '.join(self._known())}) in the identity provider "
                f"and to send it in the '{self.claim}' claim of the ID token"))
        roles = frozenset(self.names[v] for v in values if v in self.names)
        ignored = tuple(v for v in values if v not in self.names)
        if not roles:
            found = ", ".join(values) if values else "none"
            return RoleResult(roles, ignored, problem=(
                f"none of the values of your '{self.claim}' claim ({found}) is a MedUI role. Ask the "
                f"administrator to assign you one of: {', '.join(self._known())}"))
        return RoleResult(roles, ignored)

    def _known(self) -> list[str]:
        return sorted(self.names)
