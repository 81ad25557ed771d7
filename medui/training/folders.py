"""Listing a training folder on the server, safely: every file resolved (symlinks included) must lie inside
the allowed roots; folders that are symlinks are not followed; pipes, sockets, devices and pseudo file
systems (/proc, /sys, /dev) are skipped; the listing is bounded in entries, files and time, and can be
cancelled. Permission errors are reported per folder, never raised as a traceback.

The names are those `medui.io.sources.expand` gives (relative to the folder's parent), so a listing here
and an expansion there describe the same files the same way.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medui.errors import DatasetScanError
from medui.io.sources import Input, Skipped, SourceFile, printable

PSEUDO_ROOTS = ("/proc", "/sys", "/dev")  # kernel and device file systems: never training data


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.1, float(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class ScanLimits:
    """Bounds of one listing: directory entries seen (files, folders, anything), files kept, seconds;
    `cancelled()` is asked between folders (a job's cancel file, a page's stop)."""

    max_entries: int = field(default_factory=lambda: _env_int("MEDUI_MAX_SCAN_ENTRIES", 200_000))
    max_files: int = field(default_factory=lambda: _env_int("MEDUI_MAX_FILES", 20_000))
    max_seconds: float = field(default_factory=lambda: _env_float("MEDUI_SCAN_TIMEOUT_S", 60.0))
    cancelled: Callable[[], bool] | None = field(default=None, compare=False)


def _pseudo_devices() -> set[int]:
    """The devices of /proc, /sys and /dev where they are mounts of their own (not the root file system's)."""
    devices = set()
    for root in PSEUDO_ROOTS:
        try:
            devices.add(os.stat(root).st_dev)
        except OSError:
            continue
    with contextlib.suppress(OSError):
        devices.discard(os.stat("/").st_dev)
    return devices


def _inside(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _pseudo(path: str, devices: set[int], st: os.stat_result | None = None) -> bool:
    return _inside(path, PSEUDO_ROOTS) or (st is not None and st.st_dev in devices)


def on_kernel_fs(path: str | Path) -> bool:
    """Whether `path` (resolved) lies in /proc, /sys or /dev (or a mount of theirs): never a dataset."""
    real = os.path.realpath(path)
    try:
        st: os.stat_result | None = os.stat(real)
    except OSError:
        st = None
    return _pseudo(real, _pseudo_devices(), st)


@dataclass
class _Walk:
    roots: list[str]
    limits: ScanLimits
    started: float = field(default_factory=time.monotonic)
    entries: int = 0
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    devices: set[int] = field(default_factory=_pseudo_devices)

    def check(self, folder: str) -> None:
        lim = self.limits
        if lim.cancelled is not None and lim.cancelled():
            raise DatasetScanError(f"listing {folder} was cancelled; nothing was read")
        if self.entries > lim.max_entries:
            raise DatasetScanError(f"{folder} holds more than {lim.max_entries} files and folders; expected a "
                                   "dataset folder with one sub-folder per class. Choose a smaller folder, or ask the "
                                   "administrator to raise MEDUI_MAX_SCAN_ENTRIES")
        if time.monotonic() - self.started > lim.max_seconds:
            raise DatasetScanError(f"listing {folder} took more than {lim.max_seconds:.0f} s (stopped after "
                                   f"{self.entries} entries); expected a dataset folder with one sub-folder per "
                                   "class. Choose a smaller folder, or ask the administrator to raise "
                                   "MEDUI_SCAN_TIMEOUT_S")
        if len(self.files) > lim.max_files:
            raise DatasetScanError(f"{folder} holds more than {lim.max_files} files; a dataset may hold at most "
                                   f"{lim.max_files}. Choose a smaller folder or ask the administrator to raise "
                                   "MEDUI_MAX_FILES")

    def file(self, path: str, name: str) -> None:
        """Keep `path` (shown as `name`) when it resolves to a regular file inside the roots."""
        real = os.path.realpath(path)
        if not _inside(real, self.roots):
            self.skipped.append(Skipped(name, "is a link to a file outside the folders this server allows; it was "
                                              "not read. Copy the file into the dataset instead"))
            return
        try:
            st = os.stat(real)
        except OSError as exc:
            self.skipped.append(Skipped(name, f"could not be opened ({exc.strerror or type(exc).__name__})"))
            return
        if not stat.S_ISREG(st.st_mode) or _pseudo(real, self.devices, st):
            self.skipped.append(Skipped(name, "is not a regular file (a pipe, socket, device or kernel file); it "
                                              "was not read"))
            return
        self.files.append(SourceFile(name, path=path))

    def folder(self, top: str, base: str) -> None:
        """Walk `top` depth first in name order (the order `sorted(Path.rglob('*'))` gives)."""
        stack = [top]
        while stack:
            current = stack.pop()
            self.check(printable(os.path.relpath(current, base)))
            try:
                with os.scandir(current) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                self.skipped.append(Skipped(printable(os.path.relpath(current, base)) + "/",
                                            f"could not be listed ({exc.strerror or type(exc).__name__}); check that "
                                            "the folder can be read by the server"))
                continue
            self.entries += len(entries)
            below = []
            for entry in entries:
                name = printable(os.path.relpath(entry.path, base))
                try:
                    if entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if not _pseudo(entry.path, self.devices, st):
                            below.append(entry.path)
                    elif entry.is_symlink() and os.path.isdir(entry.path):
                        self.skipped.append(Skipped(name + "/", "is a link to a folder; links to folders are not "
                                                                "followed. Give the folder itself"))
                    else:
                        self.file(entry.path, name)
                except OSError as exc:
                    self.skipped.append(Skipped(name, f"could not be opened ({exc.strerror or type(exc).__name__})"))
            stack.extend(reversed(below))


def list_inputs(inputs: Iterable[Input], roots: Sequence[Path] | None = None,
                limits: ScanLimits | None = None) -> tuple[list[Input], list[Skipped]]:
    """The inputs with each folder and file on disk replaced by the SourceFiles it may be read from
    (uploads and pairs pass unchanged), and what was skipped. `roots`: the folders every file must lie in
    (resolved); None: each input is its own root. DatasetScanError when a bound is passed or a folder given
    lies outside the roots or on a pseudo file system."""
    limits = limits or ScanLimits()
    out: list[Input] = []
    skipped: list[Skipped] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            out.append(item)
            continue
        given = Path(item)
        real = os.path.realpath(given)
        allowed = [os.path.realpath(r) for r in roots] if roots is not None else [real]
        shown = printable(str(given))
        if not _inside(real, allowed) or on_kernel_fs(real):
            raise DatasetScanError(f"{shown} is outside the folders this server allows training from (or a kernel "
                                   "file system); choose a folder inside them")
        walk = _Walk(allowed, limits)
        if os.path.isdir(real):
            walk.folder(str(given), str(given.parent))
            walk.check(shown)
            if not walk.files and not walk.skipped:
                walk.skipped.append(Skipped(shown, "the folder holds no files"))
        elif os.path.lexists(given):
            walk.file(str(given), printable(given.name))
        else:
            walk.skipped.append(Skipped(shown, "no such file or folder; check the path"))
        out += walk.files
        skipped += walk.skipped
    return out, skipped
