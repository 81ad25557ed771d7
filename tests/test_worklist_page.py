"""The Worklist page (AppTest): studies sorted by score with a flag and status, filters, and a selected
row opening its study (by Study Instance UID) in Diagnose with its series and model chosen."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from medui.usecases import batch
from medui.usecases.batch_run import run
from tests.batch_data import study_folder
from tests.conftest import DEMO_MODEL

ROOT = Path(__file__).resolve().parents[1]


def _scored(isolated, n: int = 8) -> str:
    folder = Path(isolated["data"]) / "page"
    study_folder(folder, n=n, n_ct=2, corrupt=(3,))
    job = batch.start(batch.BatchRequest(model=DEMO_MODEL, folder=str(folder)), launch=False)
    assert run(job.path) == 0  # the job's process body, here in the test's process
    return job.id


AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "0123456789abcdef0123456789",
        "client_id": "medui", "client_secret": "test-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}


def _page(roles: tuple[str, ...] | None = None) -> AppTest:
    """The app (navigation, sign-in) on its Worklist page: single-user mode, or signed in with `roles`."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets = {"unrelated": "no [auth] here"} if roles is None else {"auth": AUTH}
    if roles is not None:
        at.user = {"is_logged_in": True, "sub": "carl", "name": "Carl", "email": "carl@hospital.test",
                   "roles": list(roles), "iat": 1000}
    at.run()
    at.switch_page("pages/worklist.py").run()
    assert not at.exception, at.exception
    return at


def test_the_table_is_sorted_by_score_and_flags_studies_above_the_threshold(isolated):
    _scored(isolated)
    at = _page()
    frame = at.dataframe[0].value
    scores = [s for s in frame["Score"] if s == s]  # NaN: not scored
    assert len(frame) == 8 and scores == sorted(scores, reverse=True) and len(scores) == 7
    assert frame["Status"].iloc[-1].startswith("failed: ") and "truncated" in frame["Status"].iloc[-1]
    rows = batch.worklist()
    assert list(frame["Study UID"]) == [r.study_uid for r in rows]
    assert [f != "" for f in frame["Flag"]] == [r.flagged for r in rows] and any(r.flagged for r in rows)
    at.toggle(key="worklist.flagged").set_value(True).run()
    assert set(at.dataframe[0].value["Flag"]) == {"above threshold"}
    at.toggle(key="worklist.flagged").set_value(False).run()
    at.selectbox(key="worklist.modality").set_value("CT").run()
    assert set(at.dataframe[0].value["Modality"]) == {"CT"}
    assert "Download CSV" in [b.label for b in at.get("download_button")]


def test_selecting_a_row_opens_that_study_in_diagnose_by_its_uid(isolated):
    _scored(isolated)
    at = _page()
    shown = list(at.dataframe[0].value["Study UID"])
    wanted = batch.worklist()[2]
    # the selection names a row of the table as it was shown; the page maps it to the study's UID
    at.session_state["worklist.table"] = {"selection": {"rows": [shown.index(wanted.study_uid)], "columns": []}}
    at.run()
    assert not at.exception, at.exception
    opened = at.session_state["worklist.open"]
    assert opened["study_uid"] == wanted.study_uid and opened["series_uid"] == wanted.series_uid
    assert at.session_state["dx.model"] == wanted.model and at.session_state["dx.series"] == opened["item"]
    assert [t.value for t in at.title] == ["Diagnose"]  # switched to Diagnose, the study's series chosen
    assert at.selectbox(key="dx.series").value == opened["item"]


def test_a_clinician_may_use_the_page_and_a_user_without_a_medui_role_may_not(isolated, monkeypatch):
    _scored(isolated, n=4)
    monkeypatch.setenv("MEDUI_REQUIRE_AUTH", "1")
    at = _page(("clinician",))
    assert [t.value for t in at.title] == ["Worklist"] and len(at.dataframe[0].value) == 4
    refused = _page(("visitor",))
    assert not refused.dataframe


def test_a_job_row_names_who_started_it(isolated):
    from medui.accounts.actor import Actor

    folder = Path(isolated["data"]) / "by"
    study_folder(folder, n=2, n_ct=0, corrupt=())
    who = Actor("dana-7", "Dana_Radiologist", frozenset({"clinician"}))
    job = batch.start(batch.BatchRequest(model=DEMO_MODEL, folder=str(folder)), who, launch=False)
    assert run(job.path) == 0
    shown = " ".join(m.value for m in _page().markdown)
    assert f"**{job.id}** · done · local · " in shown and "started by Dana\\_Radiologist" in shown, shown
