"""Sign-in and role gating for the pages: Streamlit's native `st.login` / `st.user` (OpenID Connect
through Authlib), configured in `.streamlit/secrets.toml` `[auth]`; MedUI's own settings (which claim
holds the roles, how its values map to MedUI roles, which provider to use) in `[medui_auth]`.

Without `[auth]` the app runs for one person on their own machine: a single local user with every
role and a visible notice. `MEDUI_REQUIRE_AUTH=1` turns that off: the server refuses to start
(`medui.ui.serve`) and every session is refused (here) until `[auth]` is configured.

The core never sees Streamlit: this module turns `st.user` into a typed `Actor` that the shell hands
to the use cases (`medui.accounts.actor.acting_as`) and that pages pass explicitly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

import streamlit as st

from medui.accounts import audit
from medui.accounts.actor import LOCAL, Actor
from medui.accounts.roles import ROLES, RoleMap, page_permission, role_for
from medui.errors import MedUIError

REQUIRE_VARIABLE = "MEDUI_REQUIRE_AUTH"
ROLE_SECTION = "medui_auth"  # secrets.toml: roles_claim, provider, provider_label, [medui_auth.roles]
ACTOR = "auth.actor"  # session state: this session's Actor, set by the shell on every run
SIGNED_IN = "auth.signed-in"  # session state: the sign-in (subject, issued at) already recorded
ANONYMOUS = Actor("anonymous", "not signed in", frozenset())
SINGLE_USER_NOTICE = "Sign-in not configured — single-user mode"
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")

REQUIRED_MESSAGE = (
    "Sign-in is required on this server (MEDUI_REQUIRE_AUTH=1) but not configured: no [auth] section was found in "
    "the secrets files Streamlit reads (.streamlit/secrets.toml beside app.py, ~/.streamlit/secrets.toml, or "
    "--secrets.files). Add [auth] with redirect_uri (https://YOUR-SERVER/oauth2callback), cookie_secret (a long "
    "random string), client_id, client_secret and server_metadata_url (your identity provider's "
    "/.well-known/openid-configuration); see .streamlit/secrets.example.toml and the README section 'Users, roles "
    "and the audit trail'. On a machine used by one person only, unset MEDUI_REQUIRE_AUTH instead.")


def require_auth() -> bool:
    """Whether MEDUI_REQUIRE_AUTH asks for sign-in (1, true, yes)."""
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def _secret(name: str) -> Mapping[str, Any] | None:
    """A section of the secrets Streamlit loaded (None when there is no secrets file or no section)."""
    try:
        if not st.secrets.load_if_toml_exists():
            return None
        section = st.secrets.get(name)
    except Exception:  # an unreadable secrets file: treated as none (Streamlit logs the parse error)
        return None
    return section if isinstance(section, Mapping) and section else None


def auth_section() -> Mapping[str, Any] | None:
    """secrets.toml's [auth] section, or None: single-user mode."""
    return _secret("auth")


def provider_names(section: Mapping[str, Any]) -> list[str]:
    """The providers [auth] configures: 'default' (client_id ... at the top) and named sub-sections."""
    named = [k for k, v in section.items() if isinstance(v, Mapping) and k != "client_kwargs"]
    return (["default"] if "client_id" in section else []) + named


def config_problem(section: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str | None:
    """What is missing from [auth] / [medui_auth] for sign-in to work (None: nothing), said plainly."""
    missing = [k for k in ("redirect_uri", "cookie_secret") if not section.get(k)]
    if missing:
        return f"[auth] in secrets.toml lacks {', '.join(missing)}; add them (see .streamlit/secrets.example.toml)"
    if not str(section["redirect_uri"]).endswith("/oauth2callback"):
        return (f"[auth] redirect_uri is {section['redirect_uri']!r}; it must end with /oauth2callback (the URL the "
                "identity provider sends users back to, as registered there)")
    providers = provider_names(section)
    if not providers:
        return ("[auth] names no identity provider; give client_id, client_secret and server_metadata_url in [auth] "
                "or in a named section such as [auth.keycloak]")
    for name in providers:
        keys = section if name == "default" else section[name]
        lacks = [k for k in PROVIDER_KEYS if not keys.get(k)]
        if lacks:
            where = "[auth]" if name == "default" else f"[auth.{name}]"
            return f"{where} lacks {', '.join(lacks)}"
    chosen = (settings or {}).get("provider")
    if chosen and chosen not in providers:
        return f"[{ROLE_SECTION}] provider is {chosen!r}, but [auth] configures {', '.join(providers)}"
    try:
        RoleMap.from_config(settings)
    except ValueError as exc:
        return str(exc)
    return None


def startup_problem() -> str | None:
    """Why this server must not serve anyone (MEDUI_REQUIRE_AUTH without a usable [auth]), or None."""
    section = auth_section()
    if section is None:
        return REQUIRED_MESSAGE if require_auth() else None
    problem = config_problem(section, _secret(ROLE_SECTION))
    return f"Sign-in is configured but cannot work: {problem}" if problem else None


def _display_name(claims: Mapping[str, Any]) -> str:
    for key in ("name", "preferred_username", "email"):
        if claims.get(key):
            return str(claims[key])
    return str(claims.get("sub", ""))


def actor() -> Actor:
    """This session's user: LOCAL in single-user mode, the signed-in user with the roles the role map
    gives, or ANONYMOUS (no roles) when sign-in is configured and nobody is signed in."""
    known = st.session_state.get(ACTOR)
    if isinstance(known, Actor):
        return known
    return _resolve()[0]


def _resolve() -> tuple[Actor, str | None]:
    """(the user, why they have no access or None), from the secrets and `st.user`."""
    if auth_section() is None:
        return (ANONYMOUS, REQUIRED_MESSAGE) if require_auth() else (LOCAL, None)
    if not st.user.get("is_logged_in"):
        return ANONYMOUS, None
    claims = st.user.to_dict()
    subject = str(claims.get("sub") or claims.get("email") or "")
    if not subject:
        return ANONYMOUS, "your sign-in carries no subject ('sub' claim); ask the administrator"
    try:
        result = RoleMap.from_config(_secret(ROLE_SECTION)).resolve(claims)
    except ValueError as exc:
        return Actor(subject, _display_name(claims), frozenset()), str(exc)
    return Actor(subject, _display_name(claims), result.roles), result.problem


def sign_in() -> Actor:
    """The shell's first step on every run: the user, or a page that says why not and stops
    (sign-in required but not configured; the sign-in button; signed in without a MedUI role)."""
    problem = startup_problem()
    if problem:
        st.error(problem, icon=":material/lock:")
        st.stop()
    who, why = _resolve()
    if who == ANONYMOUS:
        _sign_in_screen()
        st.stop()
    if who != LOCAL:
        try:
            _record_sign_in(who, why)
        except MedUIError as exc:  # every access is recorded: no trail, no access
            st.error(f"Signed in as {who.label}, but {exc}", icon=":material/error:")
            st.stop()
    if why:
        st.error(f"Signed in as {who.label}, but {why}.", icon=":material/block:")
        sign_out_button(who)
        st.stop()
    st.session_state[ACTOR] = who
    return who


def _provider() -> str:
    section, settings = auth_section() or {}, _secret(ROLE_SECTION) or {}
    chosen = settings.get("provider")
    return str(chosen) if chosen else provider_names(section)[0]


def _sign_in_screen() -> None:
    settings = _secret(ROLE_SECTION) or {}
    label = str(settings.get("provider_label") or "your hospital account")
    st.title("MedUI")
    st.markdown("Sign in to review images. What you can open depends on the role your identity provider gives you "
                f"({', '.join(ROLES)}); every access is recorded.")
    if st.button(f"Sign in with {label}", key="auth.sign-in", type="primary", icon=":material/login:"):
        st.login(_provider())


def _record_sign_in(who: Actor, why: str | None) -> None:
    """One 'sign-in' row per sign-in: per identity-token issue time, not per browser tab."""
    issued = str(st.user.get("iat") or "")
    key = (who.subject, issued)
    if st.session_state.get(SIGNED_IN) == key:
        return
    details: dict[str, Any] = {"issued_at": issued, "roles": " ".join(sorted(who.roles))}
    earlier = audit.events(audit.Query(user=who.subject, actions=(audit.SIGN_IN,), limit=20))
    if not any(e.subject == who.subject and e.details.get("issued_at") == issued for e in earlier) or not issued:
        audit.record(audit.SIGN_IN, who, _provider(), audit.REFUSED if why else audit.OK,
                     {**details, **({"reason": why[:400]} if why else {})})
    st.session_state[SIGNED_IN] = key


def sign_out_button(who: Actor) -> None:
    """'Sign out': recorded, then Streamlit's logout (and the provider's end-session page, when it has one)."""
    if st.button("Sign out", key="auth.sign-out", icon=":material/logout:"):
        with contextlib.suppress(MedUIError):  # signing out always works; the trail says it when it can
            audit.record(audit.SIGN_OUT, who, _provider())
        st.session_state.pop(ACTOR, None)
        st.session_state.pop(SIGNED_IN, None)
        st.logout()
        st.stop()  # the redirect is on its way: nothing more runs as a signed-out user


def sidebar(who: Actor) -> None:
    """Who is signed in with which roles, and Sign out; or the single-user notice."""
    if who == LOCAL:
        st.info(f"**{SINGLE_USER_NOTICE}.** You have every role. For a shared server, configure sign-in and set "
                "MEDUI_REQUIRE_AUTH=1 (README: 'Users, roles and the audit trail').", icon=":material/lock_open:")
        return
    st.markdown(f":material/account_circle: **{who.name}**  \n{', '.join(sorted(who.roles))}")
    sign_out_button(who)


def allowed(page: str, who: Actor | None = None) -> bool:
    """Whether the user may open `page` (its URL path: the page file's stem)."""
    return (who or actor()).can(page_permission(page))


def refuse(page: str, who: Actor) -> None:
    """The clear 'not allowed' for a page the user's roles do not open (a deep link, an old tab), recorded."""
    permission = page_permission(page)
    title = {"pacs": "PACS"}.get(page, page.title())
    st.error(f"**Not allowed.** The {title} page needs the {role_for(permission)} role; {who.label} has "
             f"{', '.join(sorted(who.roles)) or 'no MedUI role'}. Ask an administrator for the role if you need it.",
             icon=":material/block:")
    try:
        audit.record(audit.OPEN_PAGE, who, page, audit.REFUSED, {"needs": role_for(permission)})
    except MedUIError as exc:
        st.caption(f"The refusal could not be recorded: {exc}")


def require(page: str) -> Actor:
    """First line of a page after `ensure_navigation()`: the user, or 'not allowed' and stop."""
    who = actor()
    if not who.can(page_permission(page)):
        refuse(page, who)
        st.stop()
    return who


def not_allowed(exc: MedUIError) -> None:
    """A use case refused an action on the server (a replayed or stale widget event): say so."""
    st.error(str(exc)[:1].upper() + str(exc)[1:], icon=":material/block:")
