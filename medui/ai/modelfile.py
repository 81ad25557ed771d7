"""A `.keras` file checked before Keras opens it: from the zip's central directory only (names, count,
declared sizes, compression ratio), nothing is extracted or inflated.

A Keras 3 `.keras` file is a zip holding `config.json` and `metadata.json` (small JSON), the weights
(`model.weights.h5`, or `model.weights.npz`) and, for some layers, files under `assets/`. Anything else
(an absolute or `..` member, another member, a JSON member of gigabytes, a bomb) is refused with
`ModelFileError`, whose message names the file as the user knows it and never a server path.
"""

from __future__ import annotations

import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from medui.errors import ModelFileError

JSON_MEMBERS = ("config.json", "metadata.json")
WEIGHTS_MEMBERS = ("model.weights.h5", "model.weights.npz")
ASSETS = "assets/"
MB = 1 << 20


def _env_mb(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default))) * MB
    except ValueError:
        return default * MB


@dataclass(frozen=True)
class ModelFileLimits:
    """Caps on what a `.keras` zip may declare. The weights are capped like an upload or registry model
    (MEDUI_MAX_MODEL_MB, default 1024: the Models page accepts uploads up to 1 GB); the rest is small."""

    max_weights: int = field(default_factory=lambda: _env_mb("MEDUI_MAX_MODEL_MB", 1024))
    max_config: int = 8 * MB  # a DenseNet121's config.json is about 0.1 MB
    max_metadata: int = 64 * 1024  # {"keras_version", "date_saved"}: under 100 bytes
    max_assets: int = 64 * MB  # all files under assets/ together (vocabularies, lookup tables)
    max_members: int = 256
    max_ratio: float = 200.0  # declared size / compressed size, for members past `ratio_from` bytes
    ratio_from: int = 1 * MB


def _refuse(shown: str, found: str, what_to_do: str = "Save the model with model.save('name.keras') "
            "(Keras 3) and use that file") -> ModelFileError:
    return ModelFileError(f"{shown} is not a Keras model file: {found}; expected a Keras 3 .keras zip "
                          f"(config.json, metadata.json, model.weights.h5, optionally assets/). {what_to_do}")


def _safe_name(name: str) -> bool:
    """A relative member name without '..', '.', empty parts, backslashes, drive letters or control characters."""
    if not name or name.startswith("/") or "\\" in name or ":" in name or any(ord(c) < 32 for c in name):
        return False
    parts = name.rstrip("/").split("/")
    return all(p not in ("", ".", "..") for p in parts) and posixpath.normpath(name.rstrip("/")) == name.rstrip("/")


def _shown_name(name: str) -> str:
    text = "".join(c if c.isprintable() else "?" for c in name)
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


def check(source: str | Path | IO[bytes], display_name: str, limits: ModelFileLimits | None = None) -> list[str]:
    """The member names of a `.keras` file (a path or an open binary file) that passes every check;
    ModelFileError naming `display_name` otherwise. Reads the central directory only."""
    limits = limits or ModelFileLimits()
    try:
        if not zipfile.is_zipfile(source):
            raise _refuse(display_name, "it is not a zip archive")
        if not isinstance(source, (str, Path)):
            source.seek(0)
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise _refuse(display_name, f"its zip directory cannot be read ({type(exc).__name__})") from exc
    if len(infos) > limits.max_members:
        raise _refuse(display_name, f"it holds {len(infos)} members, at most {limits.max_members} are expected")
    seen: set[str] = set()
    assets = 0
    for info in infos:
        name = info.filename
        if not _safe_name(name):
            raise _refuse(display_name, f"it holds a member named {_shown_name(name)} (an absolute path, '..' or "
                                        "an unusual name)", "Do not use it: it may try to write outside a folder")
        if name in seen:
            raise _refuse(display_name, f"it holds the member {_shown_name(name)} twice")
        seen.add(name)
        if info.flag_bits & 0x1:
            raise _refuse(display_name, f"its member {_shown_name(name)} is encrypted")
        if name in JSON_MEMBERS:
            cap = limits.max_config if name == "config.json" else limits.max_metadata
        elif name in WEIGHTS_MEMBERS:
            cap = limits.max_weights
        elif name.startswith(ASSETS):
            assets += info.file_size
            cap = limits.max_assets - (assets - info.file_size)
        else:
            raise _refuse(display_name, f"it holds the member {_shown_name(name)}, which a .keras file does not have")
        if info.file_size > cap:
            raise _refuse(display_name, f"its member {_shown_name(name)} declares {_size(info.file_size)}, at most "
                                        f"{_size(cap)} are expected" + (" (MEDUI_MAX_MODEL_MB)" if name in
                                                                         WEIGHTS_MEMBERS else ""))
        if info.file_size > limits.ratio_from and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise _refuse(display_name, f"its member {_shown_name(name)} inflates {ratio:.0f} times (a zip bomb?), "
                                        f"at most {limits.max_ratio:.0f} times is expected")
    if "config.json" not in seen:
        raise _refuse(display_name, "it has no config.json")
    if not seen & set(WEIGHTS_MEMBERS):
        raise _refuse(display_name, "it has no weights (model.weights.h5)")
    return sorted(seen)


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1024:.0f} KB" if n >= 1024 else f"{n} bytes"
