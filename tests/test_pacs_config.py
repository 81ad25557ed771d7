"""PACS nodes from the environment and the operator's TOML file; credentials never shown."""

from __future__ import annotations

from datetime import date

import pytest

from medui.errors import PacsConfigError
from medui.pacs.config import get_node, load_nodes
from medui.pacs.model import StudyQuery

FULL = """
[[node]]
name = "orthanc"
dicomweb_url = "https://pacs.example.org/dicom-web/"
user = "medui"
password_env = "PACS_PW"
timeout_s = 12
http_compression = true
ae_title = "ORTHANC"
host = "pacs.example.org"
port = 4242
own_ae_title = "MEDUI"
own_port = 11112

[[node]]
name = "dimse-only"
ae_title = "STORESCP"
host = "10.0.0.5"
port = 104
"""


def test_env_defines_the_default_node_and_keeps_credentials_out_of_repr():
    env = {"MEDUI_DICOMWEB_URL": "http://127.0.0.1:8042/dicom-web/", "MEDUI_DICOMWEB_USER": "u",
           "MEDUI_DICOMWEB_PASSWORD": "hunter2-secret", "MEDUI_PACS_CONFIG": ""}
    node = get_node(None, env)
    assert node.name == "default" and node.protocols == ["dicomweb"]
    assert node.dicomweb is not None and node.dicomweb.url == "http://127.0.0.1:8042/dicom-web"
    assert node.dicomweb.password == "hunter2-secret"
    for text in (repr(node), str(node), node.describe()):
        assert "hunter2" not in text
    assert "basic auth" in node.describe()


def test_credentials_written_into_the_url_are_moved_out_of_it():
    node = get_node("default", {"MEDUI_DICOMWEB_URL": "http://bob:p%40ss@pacs:8042/dicom-web"})
    assert node.dicomweb is not None
    assert node.dicomweb.url == "http://pacs:8042/dicom-web"
    assert (node.dicomweb.user, node.dicomweb.password) == ("bob", "p@ss")
    assert "p@ss" not in node.describe() and "p%40ss" not in repr(node)


def test_toml_file_with_both_protocols(tmp_path):
    path = tmp_path / "pacs.toml"
    path.write_text(FULL)
    nodes = load_nodes({"MEDUI_PACS_CONFIG": str(path), "PACS_PW": "from-env"})
    orthanc = nodes["orthanc"]
    assert orthanc.protocols == ["dicomweb", "dimse"]
    assert orthanc.dicomweb is not None and orthanc.dicomweb.password == "from-env"
    assert orthanc.dicomweb.timeout == 12 and orthanc.dicomweb.compress and ", gzip" in orthanc.describe()
    assert orthanc.dimse is not None and (orthanc.dimse.ae_title, orthanc.dimse.port, orthanc.dimse.own_port) == \
        ("ORTHANC", 4242, 11112)
    assert nodes["dimse-only"].protocols == ["dimse"]
    assert "from-env" not in orthanc.describe()


def test_streamlit_folder_is_the_default_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "pacs.toml").write_text(FULL.replace('password_env = "PACS_PW"', 'password = "x"'))
    assert sorted(load_nodes({})) == ["dimse-only", "orthanc"]


@pytest.mark.parametrize(("text", "expected"), [
    ('[[node]]\nname = "a"\ndicomweb_url = "ftp://x"\n', "not an http(s) URL"),
    ('[[node]]\nname = "a"\nae_title = "WAY-TOO-LONG-AE-TITLE"\nhost = "h"\nport = 104\n', "not a DICOM AE title"),
    ('[[node]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 70000\n', "not a TCP port"),
    ('[[node]]\nname = "a"\nae_title = "A"\nport = 104\n', "missing host"),
    ('[[node]]\nname = "a"\n', "neither dicomweb_url nor a DIMSE peer"),
    ('[[node]]\nname = "a"\ndicomweb_url = "http://h"\npasword = "typo"\n', "unknown key(s) pasword"),
    ('[[node]]\nname = "a"\ndicomweb_url = "http://h"\npassword_env = "NOPE_PW"\n', "NOPE_PW, which is not set"),
    ('[[node]]\nname = "a"\ndicomweb_url = "http://h"\nhttp_compression = "yes"\n', "http_compression is 'yes'"),
    ("[[node]\n", "not a readable TOML file"),
])
def test_configuration_errors_say_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "pacs.toml"
    path.write_text(text)
    with pytest.raises(PacsConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_nodes({"MEDUI_PACS_CONFIG": str(path)})


def test_unknown_node_names_the_configured_ones():
    with pytest.raises(PacsConfigError, match="no PACS node named 'x' \\(configured: default\\)"):
        get_node("x", {"MEDUI_DICOMWEB_URL": "http://h/dicom-web", "MEDUI_PACS_CONFIG": ""})
    with pytest.raises(PacsConfigError, match="MEDUI_DICOMWEB_URL"):
        get_node(None, {"MEDUI_PACS_CONFIG": ""})


def test_query_filters_and_date_ranges():
    q = StudyQuery(patient_name=" Doe^J* ", modality="ct", date_from=date(2024, 1, 2), date_to=date(2024, 3, 4))
    assert q.filters() == {"PatientName": "Doe^J*", "StudyDate": "20240102-20240304", "ModalitiesInStudy": "CT"}
    assert StudyQuery(date_from=date(2024, 1, 2)).date_range() == "20240102-"
    assert StudyQuery(date_to=date(2024, 1, 2)).date_range() == "-20240102"
    assert StudyQuery().filters() == {}


def test_bad_timeout_in_the_environment():
    with pytest.raises(PacsConfigError, match="MEDUI_DICOMWEB_TIMEOUT_S is 'soon'"):
        load_nodes({"MEDUI_DICOMWEB_URL": "http://h/dicom-web", "MEDUI_DICOMWEB_TIMEOUT_S": "soon"})
