"""Content keys and size estimates of a load's inputs, before anything is decoded.

A key names what a load reads, so that two sessions reading the same files share one decoded
copy: uploaded bytes are hashed (BLAKE2b), files on disk are named by their resolved path, size
and modification time (hashing a 255-file CT on every open would cost more than it saves)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from medui.io.sources import Input, SourceFile

_MAX_WALK = 100_000  # files a folder key looks at; past it the folder is keyed by its name alone


def _stat_line(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"


def _data_of(item: Input) -> bytes | None:
    if isinstance(item, SourceFile):
        return item.data
    if isinstance(item, tuple) and len(item) == 2:
        return bytes(item[1])
    if not isinstance(item, (str, os.PathLike)) and hasattr(item, "getvalue"):
        return bytes(item.getvalue())
    return None


def _path_of(item: Input) -> Path | None:
    if isinstance(item, SourceFile):
        return Path(item.path) if item.path else None
    if isinstance(item, (str, os.PathLike)):
        return Path(item)
    return None


def _parts(item: Input) -> Iterable[bytes]:
    data = _data_of(item)
    if data is not None:
        yield b"D" + hashlib.blake2b(data, digest_size=20).digest()
        return
    path = _path_of(item)
    if path is None:
        yield b"?" + repr(item).encode()[:200]
        return
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())[:_MAX_WALK]
            yield b"F" + str(path.resolve()).encode()
            for p in files:
                yield _stat_line(p).encode()
        else:
            yield b"P" + _stat_line(path).encode()
    except OSError:
        yield b"!" + str(path).encode()


def content_key(inputs: Sequence[Input]) -> str:
    """A hex key that changes when any input's content (or a file's size or time) does; the
    order of the inputs does not matter."""
    lines = sorted(b"".join(_parts(item)) for item in inputs)
    h = hashlib.blake2b(digest_size=20)
    for line in lines:
        h.update(len(line).to_bytes(8, "little") + line)
    return h.hexdigest()


def input_bytes(inputs: Sequence[Input]) -> int:
    """The inputs' size on disk or in memory (what admission reserves for a load first)."""
    total = 0
    for item in inputs:
        data = _data_of(item)
        if data is not None:
            total += len(data)
            continue
        path = _path_of(item)
        try:
            if path is not None and path.is_dir():
                total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            elif path is not None:
                total += path.stat().st_size
        except OSError:
            continue
    return total
