"""The registry's audit log: `<registry>/audit.jsonl`, one JSON object per line, appended, never rewritten.

A record holds time, action, model, task, the previously promoted model, the gate's findings, an
override reason and the user when known. It never holds patient data (no image, name or ID).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medui.errors import RegistryStateError

AUDIT_FILE = "audit.jsonl"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def append(root: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Append one record (with `time` added when missing) as a single write to an O_APPEND file,
    so concurrent writers never interleave within a line. Returns the record written."""
    record = {"time": now(), **record}
    line = (json.dumps(record, sort_keys=False, ensure_ascii=False) + "\n").encode()
    path = Path(root) / AUDIT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise RegistryStateError(f"could not append to the audit log {path} ({exc}); the registry folder must be "
                                 "writable by the MedUI server and the command line") from exc
    return record


def read(root: Path) -> list[dict[str, Any]]:
    """Every record, oldest first (an empty list when there is no log yet)."""
    path = Path(root) / AUDIT_FILE
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RegistryStateError(f"{path} line {n} is not JSON ({exc}); the audit log is append-only, "
                                     "restore it from a backup") from exc
    return records
