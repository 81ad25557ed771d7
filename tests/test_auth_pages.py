"""The app shell with sign-in through Streamlit's AppTest: single-user mode, MEDUI_REQUIRE_AUTH, the
sign-in page, role gating of pages and actions (refused and recorded), and sign-in rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medui.accounts import audit

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "0123456789abcdef0123456789",
        "client_id": "medui", "client_secret": "test-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}
PAGES = ("viewer", "diagnose", "train", "models", "pacs", "audit")


def _app(user: dict | None = None, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    # a non-empty dict replaces the secrets files: a developer's own .streamlit/secrets.toml never counts
    at.secrets = secrets if secrets is not None else {"auth": AUTH}
    if user is not None:
        at.user = user
    return at.run()


def _user(sub: str, *roles: str, iat: int = 1000) -> dict:
    return {"is_logged_in": True, "sub": sub, "name": sub.title(), "email": f"{sub}@hospital.test",
            "roles": list(roles), "iat": iat}


def _go(at: AppTest, page: str) -> AppTest:
    return at.switch_page(f"pages/{page}.py").run()


def _errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


def test_single_user_mode_shows_the_notice_and_every_page_opens():
    at = _app(secrets={"unrelated": "no [auth] here"})
    assert not at.exception
    assert "Sign-in not configured — single-user mode" in at.sidebar.info[0].value
    for page in PAGES:
        _go(at, page)
        assert not at.exception and not _errors(at), (page, _errors(at))
        assert at.title, page


def test_require_auth_without_auth_serves_nobody(monkeypatch):
    monkeypatch.setenv("MEDUI_REQUIRE_AUTH", "1")
    at = _app(secrets={"unrelated": "no [auth] here"})
    assert "Sign-in is required on this server (MEDUI_REQUIRE_AUTH=1) but not configured" in _errors(at)
    assert not at.title and not at.sidebar.markdown  # no page, no navigation
    assert "cookie_secret" in _errors(at) and "secrets.example.toml" in _errors(at)


def test_signed_out_users_see_only_the_sign_in_button():
    at = _app({"is_logged_in": False})
    assert [b.label for b in at.button] == ["Sign in with your hospital account"]
    assert [t.value for t in at.title] == ["MedUI"] and not at.sidebar.markdown


def test_a_sign_in_without_the_roles_claim_is_told_what_is_missing():
    at = _app({"is_logged_in": True, "sub": "u9", "name": "Una", "iat": 5})
    assert "Signed in as Una (u9), but your sign-in carries no 'roles' claim" in _errors(at)
    assert [b.label for b in at.button] == ["Sign out"] and not at.title
    (row,) = audit.events(audit.Query(actions=(audit.SIGN_IN,)))
    assert (row.subject, row.outcome) == ("u9", "refused") and "no 'roles' claim" in row.details["reason"]


def test_a_clinician_is_refused_train_models_and_audit_and_each_refusal_is_recorded():
    at = _app(_user("clara", "clinician", "offline_access"))
    assert not at.exception and [t.value for t in at.title] == ["Viewer"]
    assert "clara" in at.sidebar.markdown[1].value.lower() and "clinician" in at.sidebar.markdown[1].value
    _go(at, "diagnose")
    assert not _errors(at) and [t.value for t in at.title] == ["Diagnose"]
    for page, title, role in (("train", "Train", "ml-engineer"), ("models", "Models", "ml-engineer"),
                              ("pacs", "PACS", "admin"), ("audit", "Audit", "admin")):
        _go(at, page)
        assert f"Not allowed. The {title} page needs the {role} role" in _errors(at).replace("**", "")
        assert not at.title  # the page did not run
    refused = audit.events(audit.Query(actions=(audit.OPEN_PAGE,)))
    assert [(r.target, r.outcome, r.subject) for r in refused] == [
        ("audit", "refused", "clara"), ("pacs", "refused", "clara"), ("models", "refused", "clara"),
        ("train", "refused", "clara")]
    signed = audit.events(audit.Query(actions=(audit.SIGN_IN,)))
    assert [(r.subject, r.outcome, r.details["roles"]) for r in signed] == [("clara", "ok", "clinician")]
    _app(_user("clara", "clinician"))  # another tab with the same sign-in: no second row
    assert len(audit.events(audit.Query(actions=(audit.SIGN_IN,)))) == 1
    _app(_user("clara", "clinician", iat=2000))  # a new sign-in
    assert len(audit.events(audit.Query(actions=(audit.SIGN_IN,)))) == 2


@pytest.fixture()
def candidate(isolated) -> str:
    """A second, non-demo model in this test's registry (the Models page offers Delete for it)."""
    from medui.usecases.models import register_file

    models = Path(isolated["models"])
    card = json.loads((models / "demo-chest-phantom-v1.json").read_text())
    card = {**card, "name": "candidate", "version": 1, "demo": False}
    return register_file(models / "demo-chest-phantom-v1.keras", "candidate.keras", json.dumps(card).encode()).id


def _models_page(user: dict, choice: str) -> AppTest:
    """The Models page run on its own (its own `auth.require` guards it), with a model chosen."""
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=TIMEOUT)
    at.secrets, at.user = {"auth": AUTH}, user
    at.run()
    at.selectbox(key="models.choice").set_value(choice).run()
    return at


def test_delete_is_offered_to_administrators_only_and_refused_on_the_server_otherwise(candidate):
    from medui.accounts.actor import Actor
    from medui.errors import NotAllowedError
    from medui.usecases.models import delete

    eng = _models_page(_user("emil", "ml-engineer"), candidate)
    assert not eng.exception and not _errors(eng)
    labels = [b.label for b in eng.button]
    assert "Delete" not in labels and "Promote" in labels
    assert "registered by" in eng.dataframe[0].value.columns
    with pytest.raises(NotAllowedError):  # a replayed Delete from an engineer's session reaches this check
        delete(candidate, actor=Actor("emil", "Emil", frozenset({"ml-engineer"})))
    adm = _models_page(_user("ada", "admin"), candidate)
    adm.button(key="models.delete").click().run()
    assert any(f"Deleted {candidate}" in m.value for m in adm.success), _errors(adm)
    rows = audit.events(audit.Query(actions=(audit.DELETE_MODEL,)))
    assert [(r.subject, r.target, r.outcome) for r in rows] == [("ada", candidate, "ok"),
                                                                ("emil", candidate, "refused")]


def test_a_page_run_on_its_own_still_refuses_a_role_it_does_not_open():
    at = AppTest.from_file(str(ROOT / "pages" / "models.py"), default_timeout=TIMEOUT)
    at.secrets, at.user = {"auth": AUTH}, _user("clara", "clinician")
    at.run()
    assert "Not allowed. The Models page needs the ml-engineer role" in _errors(at).replace("**", "")
    assert not at.title


def test_the_audit_page_lists_and_filters_for_an_administrator():
    at = _app(_user("clara", "clinician"))
    _go(at, "train")  # refused, recorded
    adm = _go(_app(_user("ada", "admin")), "audit")
    assert not adm.exception and not _errors(adm)
    table = adm.dataframe[0].value
    assert {"sign-in", "open-page"} <= set(table["action"])
    assert set(table.columns) >= {"time", "subject", "display_name", "action", "target", "outcome", "details"}
    adm.text_input(key="audit.user").set_value("clara").run()
    adm.multiselect(key="audit.actions").set_value(["open-page"]).run()
    table = adm.dataframe[0].value
    assert list(table["target"]) == ["train"] and list(table["outcome"]) == ["refused"]
    assert [b.proto.label for b in adm.get("download_button")] == ["Download CSV"]
