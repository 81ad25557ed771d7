"""The model card: a JSON file beside each `.keras` file. Training writes it, inference reads it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medui.errors import CardError


@dataclass
class Preprocessing:
    """How an image becomes a model input. One function (`medui.ai.preprocess.prepare`) applies it."""

    intensity: str = "percentile"  # "percentile" (per image), "window" (fixed, e.g. CT HU) or "minmax"
    low: float = 0.5  # percentile mode: lower percentile
    high: float = 99.5  # percentile mode: upper percentile
    window: list[float] | None = None  # window mode: [center, width] in modality units
    resize: str = "letterbox"  # "letterbox" (keep aspect, pad) or "stretch"


@dataclass
class ModelCard:
    name: str
    version: int
    class_names: list[str]
    input_size: list[int]  # [height, width]
    channels: int
    architecture: str
    cam_layer: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    task: str = "binary"  # "binary" (one sigmoid unit) or "multiclass" (softmax)
    threshold: float = 0.5
    threshold_method: str = "default 0.5 (not calibrated on held-out data)"
    parent: str | None = None
    modalities: list[str] = field(default_factory=list)  # e.g. ["CR", "DX"]; empty: any
    body_parts: list[str] = field(default_factory=list)  # e.g. ["CHEST"]; empty: any
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    intended_use: str = "Decision support for qualified clinicians. Not a medical device."
    limitations: str = ""
    demo: bool = False

    @property
    def output(self) -> str:
        return "sigmoid" if self.task == "binary" else "softmax"

    @property
    def positive_class(self) -> str:
        return self.class_names[-1]

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = self.output
        return data

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        data = dict(data)
        data.pop("output", None)
        pre = data.pop("preprocessing", {}) or {}
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("name", "version", "class_names", "input_size", "channels", "architecture", "cam_layer")
                   if k not in data]
        if missing:
            raise CardError(f"the model card lacks {', '.join(missing)}; a card needs at least name, version, "
                            "class_names, input_size, channels, architecture and cam_layer")
        card = cls(**{k: v for k, v in data.items() if k in known}, preprocessing=Preprocessing(**pre))
        card.validate()
        return card

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise CardError(f"no model card at {path}; every model needs a JSON card beside its .keras file") from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise CardError(f"the model card {path} is not valid JSON ({exc}); fix or re-create it") from None

    def validate(self) -> None:
        if len(self.class_names) < 2:
            raise CardError(f"a model needs at least two class names, found {self.class_names}")
        if self.task == "binary" and len(self.class_names) != 2:
            raise CardError(f"a binary model has exactly two classes, found {len(self.class_names)}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise CardError(f"the threshold must lie strictly between 0 and 1, found {self.threshold}")
        if self.channels not in (1, 3) or len(self.input_size) != 2:
            raise CardError(f"input must be [height, width] with 1 or 3 channels, found {self.input_size} x {self.channels}")
