"""Model registry use cases, shared by the Models page and `python -m medui models`:
register an uploaded `.keras` file with its card, delete a registered model."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from medui.ai.card import ModelCard, Preprocessing
from medui.ai.registry import Entry, find, load_keras, next_version, register
from medui.ai.registry import delete as registry_delete
from medui.errors import CardError, MedUIError


@dataclass(frozen=True)
class CardFields:
    """What the Models page's form asks for when no card file is uploaded."""

    name: str
    class_names: tuple[str, ...]  # negative class first
    input_size: int  # square
    channels: int
    cam_layer: str
    threshold: float
    training_data: str = ""

    @staticmethod
    def parse_classes(text: str) -> tuple[str, ...]:
        """'normal, abnormal' -> ('normal', 'abnormal')."""
        return tuple(c.strip() for c in text.split(",") if c.strip())

    def card(self, root: Path | None = None) -> ModelCard:
        """A card for the next free version of this name."""
        names = list(self.class_names)
        name = self.name.strip()
        return ModelCard(name=name, version=next_version(name, root), class_names=names,
                         input_size=[int(self.input_size), int(self.input_size)], channels=int(self.channels),
                         architecture="uploaded", cam_layer=self.cam_layer.strip(), preprocessing=Preprocessing(),
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


def register_upload(model_bytes: bytes, file_name: str, card: bytes | CardFields, card_name: str = "the card",
                    root: Path | None = None) -> Entry:
    """Validate an uploaded model with its card (a JSON card file's bytes, or the form's fields) and
    register it. The model is loaded once; every error names `file_name`, never a temporary path."""
    if not file_name.lower().endswith(".keras"):
        raise MedUIError(f"{file_name} is not a .keras file; save the model with model.save('name.keras') "
                         "(Keras 3) and upload that file")
    model_card = _card_from_json(card, card_name) if isinstance(card, bytes) else card.card(root)
    with tempfile.TemporaryDirectory(prefix="medui-upload-") as tmp:
        path = Path(tmp) / "upload.keras"  # Keras reads the format from the suffix
        path.write_bytes(model_bytes)
        model = load_keras(path, display_name=file_name)
        try:
            return register(path, model_card, root, model=model)
        except MedUIError as exc:
            raise type(exc)(f"{file_name} was not registered: {exc}") from exc


def delete(entry_id: str, root: Path | None = None) -> Entry:
    """Delete a registered model (never the demo model); returns what was deleted. Callers that cache
    loaded models drop their copy afterwards (`medui.ui.modelcache.delete`)."""
    entry = find(entry_id, root)
    registry_delete(entry.id, root)
    return entry
