"""PACS nodes from the operator's TOML file and the environment.

Where nodes come from, in order (a later name does not replace an earlier one):
1. `MEDUI_DICOMWEB_URL` (+ `MEDUI_DICOMWEB_USER`, `MEDUI_DICOMWEB_PASSWORD`, `MEDUI_DICOMWEB_TOKEN`):
   a DICOMweb node named `default`, for scripts and tests;
2. the TOML file `MEDUI_PACS_CONFIG`, else `.streamlit/pacs.toml` in the working directory.

The file (see README, "Hospital connection")::

    [[node]]
    name = "orthanc"
    dicomweb_url = "https://pacs.example.org/dicom-web"
    user = "medui"                 # HTTP Basic; or token = "..." (bearer)
    password_env = "PACS_PASSWORD" # read the secret from the environment (or password = "...")
    timeout_s = 30
    http_compression = false       # ask DICOMweb answers gzip-compressed (only for links under ~100 Mbit/s)
    ae_title = "ORTHANC"           # DIMSE peer (optional)
    host = "pacs.example.org"
    port = 4242
    own_ae_title = "MEDUI"
    own_port = 11112               # MedUI's storage SCP for C-MOVE (0: not used)
    retrieve = "c-move"            # or "c-get" (the default): how DIMSE retrieves instances
    parallel = 3                   # C-GET associations at once for 32+ instances (1 to 16; default 1); 3 pays
                                   # for a PACS over ~2 ms away (round trip), 1 is faster nearer
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from medui.errors import PacsConfigError
from medui.pacs.model import DimsePeer, Node, WebPeer

DEFAULT = "default"
FILE = Path(".streamlit") / "pacs.toml"
KEYS = {"name", "dicomweb_url", "user", "password", "password_env", "token", "token_env", "timeout_s",
        "http_compression",
        "ae_title", "host", "port", "own_ae_title", "own_port",
        "retrieve", "parallel"}


def _web(url: str, user: str, password: str, token: str, timeout: float, where: str,
         compress: object = False) -> WebPeer:
    """A DICOMweb peer; credentials written into the URL are moved out of it."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsConfigError(f"{where}: the DICOMweb URL {parts.scheme + '://' + (parts.hostname or '')!r}... is "
                              "not an http(s) URL; expected e.g. http://pacs.example.org:8042/dicom-web")
    if parts.username or parts.password:
        user = user or unquote(parts.username or "")
        password = password or unquote(parts.password or "")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    if timeout <= 0:
        raise PacsConfigError(f"{where}: timeout_s is {timeout}; expected a positive number of seconds")
    if not isinstance(compress, bool):
        raise PacsConfigError(f"{where}: http_compression is {compress!r}; expected true or false")
    return WebPeer(urlunsplit(parts).rstrip("/"), user, password, token, float(timeout), compress)


def _secret(entry: Mapping[str, Any], key: str, env: Mapping[str, str], where: str) -> str:
    if f"{key}_env" in entry:
        name = str(entry[f"{key}_env"])
        if name not in env:
            raise PacsConfigError(f"{where}: {key}_env names the environment variable {name}, which is not set; "
                                  "set it before starting MedUI")
        return env[name]
    return str(entry.get(key, ""))


def _node(entry: Mapping[str, Any], env: Mapping[str, str], where: str) -> Node:
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise PacsConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
    name = str(entry.get("name", "")).strip()
    if not name:
        raise PacsConfigError(f"{where}: a node needs a name, e.g. name = \"orthanc\"")
    where = f"{where} (node {name!r})"
    try:
        timeout = float(entry.get("timeout_s", 30))
        web = None
        if entry.get("dicomweb_url"):
            web = _web(str(entry["dicomweb_url"]), str(entry.get("user", "")), _secret(entry, "password", env, where),
                       _secret(entry, "token", env, where), timeout, where, entry.get("http_compression", False))
        dimse = None
        if entry.get("ae_title") or entry.get("host") or entry.get("port"):
            missing = [k for k in ("ae_title", "host", "port") if not entry.get(k)]
            if missing:
                raise PacsConfigError(f"{where}: a DIMSE peer needs ae_title, host and port; "
                                      f"missing {', '.join(missing)}")
            dimse = DimsePeer(str(entry["ae_title"]), str(entry["host"]), int(entry["port"]),
                              str(entry.get("own_ae_title", "MEDUI")), int(entry.get("own_port", 0)), timeout,
                              str(entry.get("retrieve", "c-get")).strip().lower(),
                              entry.get("parallel", DimsePeer.parallel))
            dimse.check(where)
    except (TypeError, ValueError) as exc:
        raise PacsConfigError(f"{where}: {exc}; port and own_port are integers, timeout_s a number") from exc
    if web is None and dimse is None:
        raise PacsConfigError(f"{where}: neither dicomweb_url nor a DIMSE peer (ae_title, host, port) is set")
    return Node(name, web, dimse)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env["MEDUI_PACS_CONFIG"]) if env.get("MEDUI_PACS_CONFIG") else FILE


def load_nodes(env: Mapping[str, str] | None = None) -> dict[str, Node]:
    """Every configured node by name (empty when nothing is configured)."""
    env = os.environ if env is None else env
    nodes: dict[str, Node] = {}
    if env.get("MEDUI_DICOMWEB_URL"):
        try:
            timeout = float(env.get("MEDUI_DICOMWEB_TIMEOUT_S", "30"))
        except ValueError as exc:
            raise PacsConfigError(f"MEDUI_DICOMWEB_TIMEOUT_S is {env['MEDUI_DICOMWEB_TIMEOUT_S']!r}; expected a "
                                  "number of seconds, e.g. 30") from exc
        nodes[DEFAULT] = Node(DEFAULT, _web(env["MEDUI_DICOMWEB_URL"], env.get("MEDUI_DICOMWEB_USER", ""),
                                            env.get("MEDUI_DICOMWEB_PASSWORD", ""), env.get("MEDUI_DICOMWEB_TOKEN", ""),
                                            timeout, "MEDUI_DICOMWEB_URL"))
    path = config_path(env)
    if not path.is_file():
        if env.get("MEDUI_PACS_CONFIG"):
            raise PacsConfigError(f"MEDUI_PACS_CONFIG names {path}, which is not a file; point it at a pacs.toml")
        return nodes
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PacsConfigError(f"{path} is not a readable TOML file ({exc}); fix it (see README)") from exc
    entries = doc.get("node", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise PacsConfigError(f"{path}: expected [[node]] tables, found {type(entries).__name__}")
    for k, entry in enumerate(entries, 1):
        node = _node(entry, env, f"{path}, node {k}")
        nodes.setdefault(node.name, node)
    return nodes


def get_node(name: str | None = None, env: Mapping[str, str] | None = None) -> Node:
    """The node called `name` (default: `default`)."""
    name = name or DEFAULT
    nodes = load_nodes(env)
    if name not in nodes:
        known = ", ".join(nodes) or "none"
        raise PacsConfigError(f"no PACS node named {name!r} (configured: {known}); set MEDUI_DICOMWEB_URL for "
                              f"'default' or add a [[node]] to {config_path(env)}")
    return nodes[name]
