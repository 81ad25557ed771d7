"""HTTP routes of the MedUI server (mounted by app.py through `st.App`): the reading component's
JavaScript and the voxels of published series. Pixels travel here, never through the websocket.

- `GET /medui/reader/<hash>/reader.js`: the committed bundle, gzip, cached for a year (the hash
  changes with the file);
- `GET /medui/volume/<token>/<k>`: chunk k of a published series (`medui.ui.volumes`), raw
  little-endian voxels compressed with gzip (the browser inflates them natively), cached by the
  browser for the session (a token never changes meaning); 404 for an unknown or released series.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from medui.reading.volume import chunk
from medui.ui import volumes

BUNDLE = Path(__file__).parent / "static" / "reader.js"
PREFIX = "/medui"
GZIP_LEVEL = 1  # the voxels are compressed per request: level 1 is 3.5x faster than 6 and 2.5% larger on CT


@lru_cache(maxsize=1)
def _bundle(mtime_ns: int) -> tuple[str, bytes]:
    raw = BUNDLE.read_bytes()
    return hashlib.sha256(raw).hexdigest()[:16], gzip.compress(raw, 9, mtime=0)


def bundle() -> tuple[str, bytes]:
    """(content hash, gzip body) of the component's bundle; re-read when the file changes."""
    return _bundle(BUNDLE.stat().st_mtime_ns)


def bundle_url() -> str:
    return f"{PREFIX}/reader/{bundle()[0]}/reader.js"


def volume_url(token: str) -> str:
    return f"{PREFIX}/volume/{token}"


def _reader_js(request: Request) -> Response:
    digest, body = bundle()
    if request.path_params["digest"] != digest:
        return Response("stale bundle: reload the page", status_code=404)
    return Response(body, media_type="text/javascript", headers={
        "Content-Encoding": "gzip", "Cache-Control": "public, max-age=31536000, immutable"})


def _volume_chunk(request: Request) -> Response:
    found = volumes.lookup(request.path_params["token"])
    if found is None:
        return Response("unknown or released series", status_code=404, headers={"Cache-Control": "no-store"})
    series, volume = found
    k = int(request.path_params["k"])
    if not 0 <= k < volume.n_chunks:
        return Response(f"chunk {k} does not exist ({volume.n_chunks} chunks)", status_code=404)
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    body = packer.compress(chunk(series, volume, k)) + packer.flush()
    return Response(body, media_type="application/octet-stream", headers={
        "Content-Encoding": "gzip", "Cache-Control": "private, max-age=86400, immutable"})


def routes() -> list[Route]:
    """The routes app.py hands to `st.App`."""
    return [
        Route(PREFIX + "/reader/{digest}/reader.js", _reader_js, methods=["GET"]),
        Route(PREFIX + "/volume/{token}/{k:int}", _volume_chunk, methods=["GET"]),
    ]
