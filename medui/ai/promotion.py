"""Which registered model is promoted for clinical use, per task, and the gate a model must pass.

A *task* is the classification problem a model solves: its ordered class names, negative first,
written "normal vs pneumonia" (`task_of`). Models with the same classes in the same order compete
for the same task; each task has at most one promoted model. Every other model is a *candidate*:
registering (or training) a model never promotes it.

Promotion is registry state, not part of the model card: `<registry>/promotions.json` maps each
task to its promoted model. It is rewritten whole (a temporary file and `os.replace`) under an
exclusive lock on `<registry>/.promotions.lock`, so two server processes or the command line never
lose each other's writes. Every promotion, override, refusal and withdrawal is appended to the
audit log (`medui.ai.audit`). When no model is promoted for a task, the shipped demo model (card.demo)
counts as promoted for its task, so a fresh install still diagnoses with it.

The gate (`gate`) refuses a model whose held-out AUC is missing, whose AUC 95% confidence interval
is missing or includes 0.5 (no better than chance), or whose AUC is below its parent's. An ML
engineer may promote it anyway only with an override reason, which the audit log records.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medui.ai import audit
from medui.ai.card import ModelCard
from medui.ai.registry import Entry, list_models, models_dir
from medui.errors import MedUIError, PromotionRefusedError, RegistryStateError

PROMOTIONS_FILE = "promotions.json"
LOCK_FILE = ".promotions.lock"
FORMAT = 1
CHANCE = 0.5


def task_of(card: ModelCard) -> str:
    """The task a model solves: its class names in order, e.g. 'normal vs pneumonia'."""
    return " vs ".join(card.class_names)


def held_out_auc(card: ModelCard) -> float | None:
    auc = card.metrics.get("auc")
    return float(auc) if isinstance(auc, (int, float)) and not isinstance(auc, bool) else None


def auc_interval(card: ModelCard) -> tuple[float, float] | None:
    ci = card.metrics.get("auc_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


@dataclass(frozen=True)
class Finding:
    """One result of the gate. `blocking` findings refuse promotion without an override reason;
    the others are notes shown beside them."""

    code: str  # "auc-missing", "ci-missing", "ci-includes-chance", "below-parent"; notes: "parent-*", "other-data"
    message: str
    blocking: bool = True


def _lookup(ref: str, entries: list[Entry]) -> Entry | None:
    """By id (name-vN), else the newest version of that name."""
    same = [e for e in entries if e.id == ref] or [e for e in entries if e.card.name == ref]
    return max(same, key=lambda e: e.card.version) if same else None


def parent_of(entry: Entry, entries: list[Entry]) -> Entry | None:
    return _lookup(entry.card.parent, entries) if entry.card.parent else None


def gate(entry: Entry, entries: list[Entry]) -> list[Finding]:
    """What stands between `entry` and promotion (blocking findings) and what to know (notes)."""
    card = entry.card
    found: list[Finding] = []
    auc = held_out_auc(card)
    if auc is None:
        found.append(Finding("auc-missing", f"{entry.id} has no held-out AUC in its card: it was never evaluated on "
                                            "held-out data. Evaluate it (python -m medui evaluate DATA --model "
                                            f"{entry.id}) and register the card with its metrics."))
    ci = auc_interval(card)
    if auc is not None and ci is None:
        found.append(Finding("ci-missing", f"{entry.id} has AUC {auc:.3f} but no 95% confidence interval "
                                           "(metrics.auc_ci): it cannot be shown to beat chance."))
    elif ci is not None and ci[0] <= CHANCE <= ci[1]:
        found.append(Finding("ci-includes-chance", f"The AUC 95% confidence interval of {entry.id} "
                                                   f"({ci[0]:.3f}-{ci[1]:.3f}) includes 0.5: on its held-out data it "
                                                   "is not distinguishable from chance."))
    warning = card.metrics.get("calibration_warning")
    if warning:
        found.append(Finding("evaluation-failed", f"{entry.id} failed evaluation: {warning}"))
    parent = parent_of(entry, entries)
    if card.parent and parent is None:
        found.append(Finding("parent-missing", f"Its parent {card.parent} is not in the registry; not compared.",
                             blocking=False))
    elif parent is not None:
        compared = card.metrics.get("compared")
        same_images = compared.get(parent.id) if isinstance(compared, dict) else None
        measured: object = same_images.get("auc") if isinstance(same_images, dict) else None
        same = False
        parent_auc = held_out_auc(parent.card)
        if isinstance(measured, (int, float)) and not isinstance(measured, bool):
            same, parent_auc = True, float(measured)  # the run measured its parent on its own held-out images
        if parent_auc is None:
            found.append(Finding("parent-unevaluated", f"Its parent {parent.id} has no held-out AUC; not compared.",
                                 blocking=False))
        elif auc is not None and auc < parent_auc:
            where = " on the same held-out images" if same else ""
            found.append(Finding("below-parent", f"Its held-out AUC {auc:.3f} is below its parent {parent.id}'s "
                                                 f"{parent_auc:.3f}{where}."))
        if (not same and parent_auc is not None and auc is not None
                and card.metrics.get("split") != parent.card.metrics.get("split")):
            found.append(Finding("other-data", f"{entry.id} and its parent {parent.id} were evaluated on different "
                                               f"held-out data ({card.metrics.get('split') or 'not described'} vs "
                                               f"{parent.card.metrics.get('split') or 'not described'}); evaluate both "
                                               "on the same data to compare them fairly.", blocking=False))
    return found


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.blocking]


@dataclass(frozen=True)
class Status:
    """A registered model with its promotion state."""

    entry: Entry
    task: str
    promoted: bool
    demo_fallback: bool = False  # promoted only as the demo model of a task nobody promoted a model for
    record: dict[str, Any] = field(default_factory=dict)  # the promotions.json entry when promoted there

    @property
    def evaluated(self) -> bool:
        return held_out_auc(self.entry.card) is not None

    @property
    def label(self) -> str:
        if self.promoted:
            return "promoted (demo)" if self.demo_fallback else "promoted"
        return "candidate"


def _path(root: Path | None) -> Path:
    return Path(root or models_dir()) / PROMOTIONS_FILE


def read_promotions(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """task -> {"model", "time", "user", "override"} as recorded (empty when nothing was promoted)."""
    path = _path(root)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryStateError(f"{path} cannot be read ({exc}); it records which model is promoted per task. "
                                 f"Restore it, or delete it and promote again (the history is in {audit.AUDIT_FILE})"
                                 ) from exc
    promoted = doc.get("promoted") if isinstance(doc, dict) else None
    if not isinstance(promoted, dict) or not all(isinstance(v, dict) and "model" in v for v in promoted.values()):
        raise RegistryStateError(f"{path} is not a promotions file (expected {{\"format\": {FORMAT}, \"promoted\": "
                                 "{task: {\"model\": id, ...}}}); restore it, or delete it and promote again")
    return promoted


def _write_promotions(root: Path, promoted: dict[str, dict[str, Any]]) -> None:
    path = _path(root)
    tmp = path.with_name(f".{PROMOTIONS_FILE}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(json.dumps({"format": FORMAT, "promoted": promoted}, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise RegistryStateError(f"could not write {path} ({exc}); the registry folder must be writable") from exc
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock on the registry's promotion state, across processes."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def statuses(entries: list[Entry], root: Path | None = None) -> list[Status]:
    """Each entry's status, in the order given. A recorded model that no longer exists promotes nothing."""
    promoted = read_promotions(root)
    ids = {e.id for e in entries}
    live = {task: rec for task, rec in promoted.items() if rec["model"] in ids}
    out = []
    for e in entries:
        task = task_of(e.card)
        rec = live.get(task)
        if rec is not None:
            out.append(Status(e, task, rec["model"] == e.id, record=rec if rec["model"] == e.id else {}))
        else:
            demos = [d for d in entries if d.card.demo and task_of(d.card) == task]
            fallback = bool(demos) and e.id == max(demos, key=lambda d: d.card.version).id
            out.append(Status(e, task, fallback, demo_fallback=fallback))
    return out


def promoted_map(all_status: list[Status]) -> dict[str, str]:
    """task -> id of its promoted model (the demo model where nothing else is promoted)."""
    return {s.task: s.entry.id for s in all_status if s.promoted}


def default(all_status: list[Status]) -> Status | None:
    """The model a page or command uses when none is chosen: the most recently promoted model (a
    recorded promotion before a demo fallback); with nothing promoted, the newest model (a candidate)."""
    promoted = [s for s in all_status if s.promoted]
    if promoted:
        return max(promoted, key=lambda s: (not s.demo_fallback, s.record.get("time", ""), s.entry.card.created))
    return max(all_status, key=lambda s: (s.entry.card.created, s.entry.card.version)) if all_status else None


@dataclass(frozen=True)
class Promotion:
    """What `promote` did."""

    status: Status
    previous: str | None  # the model promoted for the task before (also the demo by fallback); None: none
    findings: list[Finding]
    override: str | None
    record: dict[str, Any]  # the audit record written


def promote(model_id: str, root: Path | None = None, override: str | None = None, user: str | None = None,
            via: str = "cli") -> Promotion:
    """Promote a model for its task if it passes the gate, or with an override reason.

    PromotionRefusedError (its findings in the message, the refusal in the audit log) otherwise."""
    root = Path(root or models_dir())
    reason = (override or "").strip() or None
    with _locked(root):
        entries = list_models(root)
        entry = _lookup(model_id, entries)
        if entry is None:
            known = ", ".join(e.id for e in entries) or "none"
            raise MedUIError(f"no model named '{model_id}' in {root}; registered: {known}")
        task = task_of(entry.card)
        before = {s.task: s for s in statuses(entries, root) if s.promoted}.get(task)
        previous = before.entry.id if before is not None else None
        findings = gate(entry, entries)
        stops = blocking(findings)
        base = {"model": entry.id, "task": task, "previous": previous,
                "findings": [{"code": f.code, "message": f.message, "blocking": f.blocking} for f in findings],
                "override": reason, "user": user, "via": via}
        if stops and reason is None:
            audit.append(root, {"action": "promote-refused", **base})
            raise PromotionRefusedError(
                f"{entry.id} was not promoted for '{task}': " + " ".join(f.message for f in stops) +
                " To promote it anyway, give an override reason (it is recorded in the audit log).")
        promoted = read_promotions(root)
        record = audit.append(root, {"action": "override" if stops else "promote", **base})
        promoted[task] = {"model": entry.id, "time": record["time"], "user": user,
                          "override": reason if stops else None}
        _write_promotions(root, promoted)
        status = Status(entry, task, True, record=promoted[task])
    return Promotion(status, previous, findings, reason, record)


def withdraw(model_id: str, root: Path | None = None, user: str | None = None, via: str = "cli",
             action: str = "withdraw") -> bool:
    """Remove a model's promotion (e.g. before it is deleted); True when it was promoted. Audited."""
    root = Path(root or models_dir())
    with _locked(root):
        promoted = read_promotions(root)
        tasks = [t for t, rec in promoted.items() if rec["model"] == model_id]
        for task in tasks:
            del promoted[task]
            _write_promotions(root, promoted)
            audit.append(root, {"action": action, "model": model_id, "task": task, "previous": model_id,
                                "findings": [], "override": None, "user": user, "via": via})
    return bool(tasks)
