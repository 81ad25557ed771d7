"""Sign-in end to end: a real OpenID Connect provider (`oidc-provider-mock`, on 127.0.0.1) with a
clinician and an administrator, the app started with a test secrets.toml, Debian's chromium logging in
through the provider's pages. Checks the navigation each role sees, deep links refused on the server,
logout through the provider's end-session page, and the audit rows every step wrote."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import launch_server, stop_server

pytestmark = pytest.mark.browser

USERS = {"clara": ("Clara Clinician", ["clinician", "offline_access"]), "ada": ("Ada Admin", ["admin"])}
LABEL = "Test Hospital IdP"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The identity provider's base URL; two predefined users whose `roles` claim differs."""
    oidc = pytest.importorskip("oidc_provider_mock", reason="pip install -r requirements-test.txt")
    from werkzeug.serving import make_server

    users = [oidc.User(sub=sub, claims={"name": name, "email": f"{sub}@hospital.test", "roles": roles})
             for sub, (name, roles) in USERS.items()]
    server = make_server("127.0.0.1", 0, oidc.app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def signed_server(provider, tmp_path_factory) -> Iterator[dict]:
    """The app with sign-in configured by a test secrets.toml (STREAMLIT_SECRETS_FILES) and
    MEDUI_REQUIRE_AUTH=1; its audit trail in its own jobs folder."""
    folder = tmp_path_factory.mktemp("auth-server")
    secrets = folder / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # Streamlit fills in the server's port
        f'cookie_secret = "{os.urandom(24).hex()}"\n'
        'client_id = "medui-test"\nclient_secret = "medui-test-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
        'client_kwargs = { scope = "openid profile email", prompt = "login" }\n\n'
        f'[medui_auth]\nprovider_label = "{LABEL}"\n')
    proc, info = launch_server(folder, STREAMLIT_SECRETS_FILES=str(secrets), MEDUI_REQUIRE_AUTH="1")
    yield info
    stop_server(proc)


def _download(page, button) -> Path:
    """Click a download button once the app has finished its script run, and the file it gives; a click
    that lands while a rerun replaces the button (a busy machine) is tried once more."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(2):
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=180_000)
        try:
            with page.expect_download(timeout=60_000) as download:
                button.click(timeout=120_000)
            return Path(download.value.path())
        except PlaywrightTimeout:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _loopback_only(page) -> None:
    """Every request off this machine is refused: the test must not depend on the network."""
    def route(r) -> None:
        host = urlsplit(r.request.url).hostname
        r.continue_() if host in ("127.0.0.1", "localhost", "::1") else r.abort()

    page.route("**/*", route)


def _sign_in(page, url: str, sub: str) -> None:
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name=f"Sign in with {LABEL}").click(timeout=90_000)
    page.get_by_role("heading", name="Authorize Client").wait_for(timeout=30_000)  # the provider's page
    page.get_by_role("button", name=sub, exact=True).click()
    page.get_by_role("heading", name="Viewer", exact=True).wait_for(timeout=120_000)


def _nav(page) -> list[str]:
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.wait_for(timeout=30_000)
    return [t.strip().splitlines()[-1] for t in nav.locator("a").all_inner_texts()]  # after the icon's name


def _audit(info: dict, **query):
    from medui.accounts import audit

    url = f"sqlite:///{Path(info['jobs']) / 'medui.db'}"
    return audit.events(audit.Query(**query), url=url)


def test_sign_in_roles_deep_links_logout_and_the_audit_trail(signed_server, browser, artifacts):
    url = signed_server["url"]
    clara = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = clara.new_page()
    _loopback_only(page)
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name=f"Sign in with {LABEL}").wait_for(timeout=90_000)
    assert page.get_by_role("heading", name="Viewer").count() == 0  # nothing before sign-in

    _sign_in(page, url, "clara")
    assert page.get_by_text("Clara Clinician").first.is_visible()
    assert _nav(page) == ["Viewer", "Diagnose", "Worklist"]  # Train, Models, PACS and Audit are hidden from a clinician
    page.screenshot(path=str(artifacts / "e2e-auth-clinician.png"), full_page=True)

    for path, title, role in (("/train", "Train", "ml-engineer"), ("/audit", "Audit", "admin")):
        page.goto(url + path, wait_until="networkidle")  # a deep link: refused by the server
        page.get_by_text(f"The {title} page needs the {role} role").wait_for(timeout=60_000)
        assert page.get_by_text("Not allowed.").count() == 1
        assert page.get_by_role("heading", name=title).count() == 0

    page.goto(url + "/diagnose", wait_until="networkidle")  # open a series and score it, as Clara
    page.get_by_role("tab", name="Try a sample").click(timeout=90_000)
    page.get_by_role("button", name="Load sample").click()
    page.get_by_text("Model in use:").wait_for(timeout=180_000)
    deadline = time.time() + 240  # the score and the default overlay are recorded once computed
    while len(_audit(signed_server, user="clara", actions=("score", "explain"))) < 2 and time.time() < deadline:
        time.sleep(1)
    page.get_by_text("Compare saliency methods side by side").click()  # the PNGs are in this expander
    png = _download(page, page.get_by_role("button", name="Download PNG").first)  # made, and recorded, on click
    assert png.read_bytes().startswith(b"\x89PNG")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="End Session").wait_for(timeout=30_000)  # the provider's logout page
    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name=f"Sign in with {LABEL}").wait_for(timeout=90_000)
    page.goto(url + "/diagnose", wait_until="networkidle")  # the cookie is gone: no page without signing in
    page.get_by_role("button", name=f"Sign in with {LABEL}").wait_for(timeout=90_000)
    assert page.get_by_role("heading", name="Diagnose").count() == 0
    clara.close()

    rows = _audit(signed_server, user="clara")
    got = [(r.action, r.outcome) for r in reversed(rows)]
    assert got[0] == ("sign-in", "ok") and got[-1] == ("sign-out", "ok"), got
    assert ("open-page", "refused") in got and ("open-series", "ok") in got and ("score", "ok") in got
    assert ("explain", "ok") in got and ("export-result", "ok") in got
    assert [r.target for r in rows if r.action == "open-page"] == ["audit", "train"]
    assert not _audit(signed_server, user="anonymous")  # nothing runs after signing out
    assert sum(1 for a, _ in got if a == "sign-in") == 1  # one sign-in, however many tabs and links
    opened = next(r for r in rows if r.action == "open-series")
    assert opened.target.startswith("study 1.") and " series 1." in opened.target
    assert opened.display_name == "Clara Clinician" and opened.via == "app"
    scored = next(r for r in rows if r.action == "score")
    assert scored.details["model"] == "demo-chest-phantom-v1"

    ada = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ada.new_page()
    _loopback_only(page)
    _sign_in(page, url, "ada")
    assert _nav(page) == ["Viewer", "Diagnose", "Worklist", "Train", "Models", "PACS", "Audit"]
    page.goto(url + "/audit", wait_until="networkidle")
    page.get_by_role("heading", name="Audit trail").wait_for(timeout=60_000)
    page.get_by_text("event(s), newest first").wait_for(timeout=30_000)
    page.screenshot(path=str(artifacts / "e2e-auth-audit.png"), full_page=True)
    exported = _download(page, page.get_by_role("button", name="Download CSV")).read_text()
    assert exported.startswith("id,time,subject,display_name,via,action,target,outcome,details")
    assert "clara,Clara Clinician,app,open-series,study 1." in exported
    ada.close()
    got = [(r.action, r.outcome) for r in _audit(signed_server, user="ada")]
    assert got == [("export-audit", "ok"), ("sign-in", "ok")]
    assert "Traceback" not in Path(signed_server["log"]).read_text()


def test_without_sign_in_the_app_says_single_user_mode_and_every_page_is_there(app_url, page):
    _loopback_only(page)
    page.goto(app_url, wait_until="networkidle")
    page.get_by_text("Sign-in not configured — single-user mode").wait_for(timeout=90_000)
    assert _nav(page) == ["Viewer", "Diagnose", "Worklist", "Train", "Models", "PACS", "Audit"]
    page.goto(app_url + "/audit", wait_until="networkidle")
    page.get_by_role("heading", name="Audit trail").wait_for(timeout=60_000)
    assert page.get_by_text("Not allowed.").count() == 0
