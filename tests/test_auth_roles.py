"""The role map (claims -> MedUI roles), permissions, the Actor, and the sign-in configuration checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medui.accounts.actor import LOCAL, Actor, acting_as, cli_actor, current, require
from medui.accounts.roles import ADMIN, CLINICIAN, ML_ENGINEER, PAGES, RoleMap, page_permission, permissions_of
from medui.errors import NotAllowedError

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_claim_gives_no_access_and_says_which_claim():
    result = RoleMap().resolve({"sub": "u1", "name": "Una"})
    assert result.roles == frozenset()
    assert result.problem and "no 'roles' claim" in result.problem
    assert "clinician, ml-engineer" in result.problem.replace("admin, ", "")  # says which roles exist


def test_unknown_roles_are_ignored_and_listed():
    result = RoleMap().resolve({"roles": ["clinician", "offline_access", "uma_authorization"]})
    assert result.roles == {CLINICIAN}
    assert result.ignored == ("offline_access", "uma_authorization")
    assert result.problem is None


def test_only_unknown_roles_is_no_access_with_the_values_named():
    result = RoleMap().resolve({"roles": ["nurse", "porter"]})
    assert result.roles == frozenset() and result.ignored == ("nurse", "porter")
    assert result.problem and "nurse, porter" in result.problem and "is a MedUI role" in result.problem


def test_a_string_claim_is_split_and_a_nested_claim_is_followed():
    assert RoleMap().resolve({"roles": "clinician admin"}).roles == {CLINICIAN, ADMIN}
    assert RoleMap().resolve({"roles": "clinician,ml-engineer"}).roles == {CLINICIAN, ML_ENGINEER}
    keycloak = RoleMap(claim="realm_access.roles")
    assert keycloak.resolve({"realm_access": {"roles": ["ml-engineer", "default-roles-hospital"]}}).roles == {
        ML_ENGINEER}
    assert "no 'realm_access.roles' claim" in (keycloak.resolve({"realm_access": {}}).problem or "")


def test_a_configured_map_replaces_the_default_names():
    rm = RoleMap.from_config({"roles_claim": "groups", "roles": {"radiology-reader": "clinician", "ai-team":
                                                                 "ml-engineer"}})
    assert rm.claim == "groups"
    assert rm.resolve({"groups": ["radiology-reader", "admin"]}).roles == {CLINICIAN}  # 'admin' is not mapped
    assert rm.resolve({"groups": ["ai-team"]}).roles == {ML_ENGINEER}
    assert RoleMap.from_config(None) == RoleMap()


def test_a_map_to_an_unknown_role_is_refused_with_the_allowed_roles():
    with pytest.raises(ValueError, match=r"unknown MedUI roles; allowed: clinician, ml-engineer, admin"):
        RoleMap.from_config({"roles": {"radiology": "radiologist"}})


def test_roles_are_cumulative_and_pages_are_gated_by_the_issue():
    clin, eng, adm = (permissions_of({r}) for r in (CLINICIAN, ML_ENGINEER, ADMIN))
    assert clin < eng < adm
    assert {"viewer", "diagnose", "worklist", "report", "send-result"} <= clin
    assert not {"train", "register-model", "delete-model", "audit", "pacs-settings"} & clin
    assert {"train", "evaluate", "register-model"} <= eng and not {"delete-model", "audit", "pacs-settings"} & eng
    assert {"delete-model", "pacs-settings", "audit"} <= adm
    assert page_permission("pacs") == "pacs-settings" and page_permission("audit") == "audit"
    assert page_permission("a-page-nobody-mapped") == "audit"  # new pages are closed until mapped
    assert set(PAGES) >= {"viewer", "diagnose", "worklist", "train", "models", "pacs", "audit"}


def test_require_names_the_role_needed_and_the_users_roles():
    clara = Actor("c1", "Clara", frozenset({CLINICIAN}))
    require(clara, "diagnose", "scoring")
    with pytest.raises(NotAllowedError, match=r"not allowed: deleting a model needs the admin role; Clara \(c1\) has "
                                              r"clinician"):
        require(clara, "delete-model", "deleting a model")
    require(None, "delete-model", "anything")  # internal callers are not checked
    assert LOCAL.can("audit") and cli_actor().can("delete-model") and cli_actor().via == "cli"


def test_acting_as_is_scoped_to_its_block():
    clara = Actor("c1", "Clara", frozenset({CLINICIAN}))
    assert current() is None
    with acting_as(clara):
        assert current() is clara
        assert current(LOCAL) is LOCAL  # an explicit actor wins
    assert current() is None


def test_auth_config_problems_are_said_plainly():
    from medui.ui.auth import config_problem, provider_names

    good = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32, "client_id": "medui",
            "client_secret": "x", "server_metadata_url": "http://idp/.well-known/openid-configuration"}
    assert config_problem(good) is None and provider_names(good) == ["default"]
    assert "lacks cookie_secret" in (config_problem({**good, "cookie_secret": ""}) or "")
    assert "end with /oauth2callback" in (config_problem({**good, "redirect_uri": "http://h/cb"}) or "")
    named = {k: good[k] for k in ("redirect_uri", "cookie_secret")} | {"keycloak": {"client_id": "m"}}
    assert config_problem(named) == "[auth.keycloak] lacks client_secret, server_metadata_url"
    assert "names no identity provider" in (config_problem({k: good[k] for k in ("redirect_uri", "cookie_secret")})
                                            or "")
    assert "provider is 'entra'" in (config_problem(good, {"provider": "entra"}) or "")
    assert "unknown MedUI roles" in (config_problem(good, {"roles": {"x": "boss"}}) or "")


def _serve(tmp_path: Path, secrets: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m medui.ui.serve` (what `make run` runs) with a secrets file of its own; a server that
    would start is not left running (the timeout ends it)."""
    path = tmp_path / "secrets.toml"
    if secrets is not None:
        path.write_text(secrets)
    full = {k: v for k, v in __import__("os").environ.items() if k != "MEDUI_REQUIRE_AUTH"} | env
    return subprocess.run([sys.executable, "-m", "medui.ui.serve", "--secrets.files", str(path),
                           "--server.headless", "true", "--server.port", "1"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=full)


def test_require_auth_without_auth_refuses_to_start_and_says_what_to_configure(tmp_path):
    proc = _serve(tmp_path, None, MEDUI_REQUIRE_AUTH="1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    msg = proc.stderr
    assert msg.startswith("MedUI will not start: Sign-in is required on this server (MEDUI_REQUIRE_AUTH=1)")
    for what in ("[auth]", "redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url",
                 ".streamlit/secrets.example.toml"):
        assert what in msg
    assert "Traceback" not in msg


def test_an_incomplete_auth_section_refuses_to_start_even_without_require_auth(tmp_path):
    proc = _serve(tmp_path, '[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n'
                            'cookie_secret = "0123456789abcdef0123"\nclient_id = "medui"\n')
    assert proc.returncode == 2
    assert "Sign-in is configured but cannot work: [auth] lacks client_secret, server_metadata_url" in proc.stderr


def test_the_launcher_reads_the_secrets_streamlit_would_read(tmp_path, monkeypatch):
    from medui.ui import serve

    good = ('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\ncookie_secret = "0123456789abcdef0123"\n'
            'client_id = "medui"\nclient_secret = "x"\nserver_metadata_url = "http://127.0.0.1:1/.well-known/o"\n')
    (tmp_path / "good.toml").write_text(good)
    monkeypatch.setenv("MEDUI_REQUIRE_AUTH", "1")
    try:
        assert serve.problem(["--secrets.files", str(tmp_path / "good.toml")]) is None
        assert "not configured" in (serve.problem([f"--secrets.files={tmp_path / 'missing.toml'}"]) or "")
        monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(tmp_path / "good.toml"))  # as `streamlit run` reads it
        assert serve.problem([]) is None
    finally:
        from streamlit import config
        from streamlit.runtime.secrets import secrets_singleton

        monkeypatch.delenv("STREAMLIT_SECRETS_FILES", raising=False)
        config.get_config_options(force_reparse=True)
        secrets_singleton._reset()
    assert serve.flag_options(["--server.port", "1", "--secrets.files=a", "--secrets.files", "b"]) == {
        "server.port": "1", "secrets.files": ["a", "b"]}


def test_only_the_starter_or_an_administrator_may_cancel_a_job():
    from medui.accounts.actor import Actor, require_owner
    from medui.errors import NotAllowedError

    started = {"subject": "ann-1", "name": "Ann"}
    require_owner(Actor("ann-1", "Ann", frozenset({"clinician"})), "job J", started)  # the starter
    require_owner(Actor("root", "Root", frozenset({"admin"})), "job J", started)  # an administrator
    require_owner(None, "job J", started)  # internal callers are not checked
    require_owner(Actor("bob-2", "Bob", frozenset({"clinician"})), "job J", {})  # a job from before owners
    with pytest.raises(NotAllowedError, match="job J was started by Ann; only they or an administrator"):
        require_owner(Actor("bob-2", "Bob", frozenset({"ml-engineer"})), "job J", started)
