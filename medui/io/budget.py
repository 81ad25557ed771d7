"""The memory budget of one load: every byte a load keeps (inflated archives and gzip files,
decoded series) is charged to it while it is read, so the sum over all files stays bounded.

The default budget is half of the memory available when the load starts (MemAvailable in
/proc/meminfo), capped by MEDUI_MAX_LOAD_MB when that is set.
"""

from __future__ import annotations

import os

from medui.errors import LoadBudgetError

MiB = 1024**2
FALLBACK_BYTES = 8192 * MiB  # where /proc/meminfo cannot be read
AVAILABLE_FRACTION = 0.5
# Exceptions that must never be turned into a skipped file (the user or the interpreter stops).
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_load_bytes() -> int:
    """Half the available memory, capped by MEDUI_MAX_LOAD_MB when set."""
    avail = available_bytes()
    budget = int(avail * AVAILABLE_FRACTION) if avail else FALLBACK_BYTES
    cap = os.environ.get("MEDUI_MAX_LOAD_MB")
    if cap:
        budget = min(budget, int(float(cap) * MiB))
    return max(budget, 1)


class Budget:
    """Bytes a load may still keep. What does not fit is refused (LoadBudgetError) and what it had
    charged is released; the load goes on with what still fits and keeps what it read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    def charge(self, n: int, what: str) -> None:
        """Count `n` more bytes; raises LoadBudgetError when they pass the budget."""
        if self.used + n > self.limit:
            raise LoadBudgetError(self.message(what, n))
        self.used += n

    def release(self, n: int) -> None:
        """Give back bytes charged for something that was then dropped."""
        self.used = max(self.used - n, 0)

    def message(self, what: str, n: int = 0) -> str:
        return (f"was not read: this load reached its memory budget of {self.limit / MiB:.0f} MiB "
                f"({self.used / MiB:.0f} MiB already held, {what} needs {n / MiB:.1f} MiB more). "
                "The series read so far are kept; load the rest separately or raise MEDUI_MAX_LOAD_MB "
                "if this machine has the memory")
