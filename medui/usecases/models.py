"""Model registry use cases, shared by the Models page and `python -m medui models` / `promote`:
register an uploaded `.keras` file with its card (a candidate), the models' promotion status and the
default model, compare a candidate with the promoted model and its parent, promote, delete."""

from __future__ import annotations

import dataclasses
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require
from medui.ai import promotion
from medui.ai.card import ModelCard, Preprocessing
from medui.ai.modelfile import check as check_model_file
from medui.ai.promotion import Finding, Promotion, Status
from medui.ai.registry import (
    Entry,
    ModelShape,
    check_name,
    find,
    list_models,
    load_keras,
    next_version,
    register,
    shape_of,
)
from medui.ai.registry import delete as registry_delete
from medui.errors import CardError, MedUIError


@dataclass(frozen=True)
class CardFields:
    """What the Models page's form asks for when no card file is uploaded. Input size and channels
    are read from the model itself unless given."""

    name: str
    class_names: tuple[str, ...]  # negative class first
    cam_layer: str
    threshold: float
    training_data: str = ""
    input_size: int | tuple[int, int] | None = None  # None: the model's; an int: square
    channels: int | None = None  # None: the model's

    @staticmethod
    def parse_classes(text: str) -> tuple[str, ...]:
        """'normal, abnormal' -> ('normal', 'abnormal')."""
        return tuple(c.strip() for c in text.split(",") if c.strip())

    def card(self, root: Path | None = None, shape: ModelShape | None = None) -> ModelCard:
        """A card for the next free version of this name (input, channels and, when none is given, the CAM
        layer (its last feature maps) from `shape`)."""
        names = list(self.class_names)
        name = self.name.strip()
        size = self.input_size if self.input_size is not None else (shape.input_size if shape else None)
        channels = self.channels if self.channels is not None else (shape.channels if shape else None)
        if size is None or channels is None:
            raise CardError("the card needs the model's input size and channels; give them or upload the model")
        hw = [int(size), int(size)] if isinstance(size, int) else [int(size[0]), int(size[1])]
        cam = self.cam_layer.strip() or (shape.cam_layers[0] if shape and shape.cam_layers else "")
        return ModelCard(name=name, version=next_version(name, root), class_names=names,
                         input_size=hw, channels=int(channels),
                         architecture="uploaded", cam_layer=cam, preprocessing=Preprocessing(),
                         task="binary" if len(names) == 2 else "multiclass", threshold=float(self.threshold),
                         threshold_method="given by the user at upload", training_data={"source": self.training_data})


def _card_from_json(card_json: bytes, card_name: str) -> ModelCard:
    try:
        data = json.loads(card_json)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CardError(f"{card_name} is not valid JSON ({exc}); upload the card MedUI wrote beside the model, "
                        "or leave it out and fill in the form") from exc
    if not isinstance(data, dict):
        raise CardError(f"{card_name} holds a JSON {type(data).__name__}, expected an object with name, version, "
                        "class_names, input_size, channels, architecture and cam_layer")
    try:
        return ModelCard.from_json(data)
    except CardError as exc:
        raise CardError(f"{card_name}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise CardError(f"{card_name} has a field of the wrong type ({exc}); compare it with a card MedUI "
                        "wrote") from exc


def _require_keras_name(file_name: str) -> None:
    if not file_name.lower().endswith(".keras"):
        raise MedUIError(f"{file_name} is not a .keras file; save the model with model.save('name.keras') "
                         "(Keras 3) and upload that file")


def register_file(path: Path, file_name: str, card: bytes | CardFields | None = None, card_name: str = "the card",
                  root: Path | None = None, name: str | None = None, actor: Actor | None = None) -> Entry:
    """Check (`medui.ai.modelfile`), load once and register a `.keras` file on disk with its card: a JSON
    card file's bytes, the form's fields, or None (the model's own shape with `CardFields`' defaults).
    `name` renames the card (at the next free version of that name). Errors name `file_name`, never `path`.
    Needs the 'register-model' permission; the card records who registered it; audited."""
    who = current(actor)
    with audit.attempt(audit.REGISTER_MODEL, who, file_name) as step:
        require(who, "register-model", "registering a model")
        entry = _register_file(path, file_name, card, card_name, root, name, who)
        step.target = entry.id
    return entry


def _register_file(path: Path, file_name: str, card: bytes | CardFields | None, card_name: str,
                   root: Path | None, name: str | None, who: Actor | None) -> Entry:
    _require_keras_name(file_name)
    model = load_keras(path, display_name=file_name)
    try:
        if isinstance(card, bytes):
            model_card = _card_from_json(card, card_name)
            if name is not None and name.strip() != model_card.name:
                check_name(name.strip())
                model_card = dataclasses.replace(model_card, name=name.strip(),
                                                 version=next_version(name.strip(), root))
        else:
            fields = card or CardFields(name=name or Path(file_name).stem, class_names=("normal", "abnormal"),
                                        cam_layer="", threshold=0.5)
            if name is not None:
                fields = dataclasses.replace(fields, name=name)
            model_card = fields.card(root, shape_of(model, file_name))
        if who is not None:
            model_card = dataclasses.replace(model_card, registered_by=who.to_json())
        return register(path, model_card, root, model=model)
    except MedUIError as exc:
        text = str(exc).replace(str(path), file_name)
        raise type(exc)(text if text.startswith(file_name) else f"{file_name} was not registered: {text}") from exc


def register_upload(model_bytes: bytes, file_name: str, card: bytes | CardFields, card_name: str = "the card",
                    root: Path | None = None, actor: Actor | None = None) -> Entry:
    """Validate an uploaded model with its card (a JSON card file's bytes, or the form's fields) and
    register it. The zip is checked in memory before anything is written; the model is loaded once;
    every error names `file_name`, never a temporary path. Permission and audit as `register_file`."""
    who = current(actor)
    with audit.attempt(audit.REGISTER_MODEL, who, file_name) as step:
        require(who, "register-model", "registering a model")
        _require_keras_name(file_name)
        check_model_file(io.BytesIO(model_bytes), file_name)
        with tempfile.TemporaryDirectory(prefix="medui-upload-") as tmp:
            path = Path(tmp) / "upload.keras"  # Keras reads the format from the suffix
            path.write_bytes(model_bytes)
            entry = _register_file(path, file_name, card, card_name, root, None, who)
        step.target = entry.id
    return entry


def inspect_upload(model_bytes: bytes, file_name: str) -> ModelShape:
    """Load an uploaded model (checked, then in safe mode) and read its input size, channels, outputs and
    CAM layer candidates, for the registration form to show instead of asking. Errors name `file_name`."""
    _require_keras_name(file_name)
    check_model_file(io.BytesIO(model_bytes), file_name)
    with tempfile.TemporaryDirectory(prefix="medui-upload-") as tmp:
        path = Path(tmp) / "upload.keras"
        path.write_bytes(model_bytes)
        return shape_of(load_keras(path, display_name=file_name), file_name)


def delete(entry_id: str, root: Path | None = None, user: str | None = None, via: str = "cli",
           actor: Actor | None = None) -> Entry:
    """Delete a registered model (never the demo model); returns what was deleted. A promoted model
    loses its promotion first (audited as 'delete'). Callers that cache loaded models drop their copy
    afterwards (`medui.ui.modelcache.delete`). Needs the 'delete-model' permission (administrators)."""
    who = current(actor)
    with audit.attempt(audit.DELETE_MODEL, who, entry_id):
        require(who, "delete-model", "deleting a model")
        entry = find(entry_id, root)
        if entry.card.demo:
            registry_delete(entry.id, root)  # refuses, with the reason
        user = user or (who.label if who else None)
        promotion.withdraw(entry.id, entry.path.parent, user=user, via=via, action="delete")
        registry_delete(entry.id, root)
    return entry


def status(root: Path | None = None) -> list[Status]:
    """Every registered model (newest first) with its promotion status."""
    return promotion.statuses(list_models(root), root)


def default_model(root: Path | None = None) -> Status | None:
    """The model Diagnose and `predict` use when none is chosen (see `medui.ai.promotion.default`)."""
    return promotion.default(status(root))


def model_warning(state: Status) -> str | None:
    """The warning every result of a candidate or never-evaluated model carries (None for a
    promoted, evaluated model)."""
    parts = []
    if not state.promoted:
        parts.append(f"Candidate model — not promoted for clinical use ({state.task})")
    if not state.evaluated:
        parts.append("never evaluated on held-out data (no AUC in its card)")
    return "; ".join(parts) + "." if parts else None


def promote(model_id: str, override: str | None = None, user: str | None = None, via: str = "cli",
            root: Path | None = None, actor: Actor | None = None) -> Promotion:
    """Promote a model for its task (the gate must pass, or `override` gives the reason). Needs the
    'promote-model' permission; recorded in the registry's audit.jsonl and in the audit trail."""
    who = current(actor)
    details = {"override": (override or "")[:400]} if override else {}
    with audit.attempt(audit.PROMOTE_MODEL, who, model_id, details):
        require(who, "promote-model", "promoting a model")
        return promotion.promote(model_id, root, override=override, user=user or (who.label if who else None),
                                 via=via)


@dataclass(frozen=True)
class Comparison:
    """A model beside the promoted model of its task and its parent, with the gate's findings."""

    model: Status
    promoted: Status | None  # None: nothing promoted for the task, or it is `model` itself
    parent: Status | None
    findings: list[Finding]

    @property
    def compared(self) -> dict[str, dict[str, Any]]:
        """Other models' metrics measured by this model's training run on its own held-out images."""
        found = self.model.entry.card.metrics.get("compared")
        return found if isinstance(found, dict) else {}

    @property
    def same_data(self) -> bool:
        """Whether every model shown was evaluated on the same held-out images: measured side by side
        by this model's training run, or cards that describe the same held-out data."""
        others = [s for s in self.columns if s is not self.model]
        if others and all(s.entry.id in self.compared for s in others):
            return True
        splits = {s.entry.card.metrics.get("split") for s in self.columns}
        return len(splits) == 1 and None not in splits and "" not in splits

    def card_for(self, column: Status) -> ModelCard:
        """The card whose metrics the table shows for a column: the same-images measurement when there is one."""
        measured = self.compared.get(column.entry.id)
        if column is self.model or not isinstance(measured, dict):
            return column.entry.card
        split = f"the same images as {self.model.entry.id}: {measured.get('split', '')}".rstrip(": ")
        return dataclasses.replace(column.entry.card, metrics={**measured, "split": split})

    @property
    def columns(self) -> list[Status]:
        seen: list[Status] = []
        for s in (self.model, self.promoted, self.parent):
            if s is not None and s.entry.id not in {x.entry.id for x in seen}:
                seen.append(s)
        return seen

    def role(self, column: Status) -> str:
        """'this model, candidate', 'parent, promoted', ..."""
        roles = [name for name, s in (("this model", self.model), ("parent", self.parent)) if s is column]
        return ", ".join([*roles, column.label])

    def rows(self) -> list[dict[str, object]]:
        """One row per metric, one column per model (its id with its role)."""
        def auc(card: ModelCard) -> str:
            value, ci = promotion.held_out_auc(card), promotion.auc_interval(card)
            if value is None:
                return "not evaluated"
            return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else " (no CI)")

        def num(card: ModelCard, key: str) -> str:
            v = card.metrics.get(key)
            return f"{v:.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"

        heads = [f"{s.entry.id}: {self.role(s)}" for s in self.columns]
        out: list[dict[str, object]] = []
        for metric, get in (("AUC (95% CI)", auc), ("sensitivity", lambda c: num(c, "sensitivity")),
                            ("specificity", lambda c: num(c, "specificity")),
                            ("threshold", lambda c: f"{c.threshold:.3f}"),
                            ("n (held-out images)", lambda c: str(c.metrics.get("n", "—"))),
                            ("held-out data", lambda c: str(c.metrics.get("split") or "—"))):
            row: dict[str, object] = {"metric": metric}
            row.update({h: get(self.card_for(s)) for h, s in zip(heads, self.columns, strict=True)})
            out.append(row)
        return out


def compare(model_id: str, root: Path | None = None) -> Comparison:
    """`model_id` beside its task's promoted model and its parent, with the gate's findings."""
    everything = status(root)
    by_id = {s.entry.id: s for s in everything}
    model = by_id.get(find(model_id, root).id)
    assert model is not None
    promoted = next((s for s in everything if s.promoted and s.task == model.task and s is not model), None)
    parent_entry = promotion.parent_of(model.entry, [s.entry for s in everything])
    parent = by_id.get(parent_entry.id) if parent_entry else None
    return Comparison(model, promoted, parent, promotion.gate(model.entry, [s.entry for s in everything]))
