"""The model card: a JSON file beside each `.keras` file. Training writes it, inference reads it."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union

from medui.errors import CardError

INTENSITY_MODES = ("percentile", "window", "minmax")
RESIZE_MODES = ("letterbox", "stretch")
TASKS = ("binary", "multiclass")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input. One function (`medui.ai.preprocess.prepare`) applies it."""

    intensity: str = "percentile"  # "percentile" (per image), "window" (fixed, e.g. CT HU) or "minmax"
    low: float = 0.5  # percentile mode: lower percentile
    high: float = 99.5  # percentile mode: upper percentile
    window: list[float] | None = None  # window mode: [center, width] in modality units
    resize: str = "letterbox"  # "letterbox" (keep aspect, pad) or "stretch"


    def validate(self) -> None:
        """CardError for a mode `medui.ai.preprocess.prepare` does not know, or a window mode without a window."""
        for name, value, allowed in (("intensity", self.intensity, INTENSITY_MODES),
                                     ("resize", self.resize, RESIZE_MODES)):
            if value not in allowed:
                raise CardError(f"the model card's preprocessing.{name} is {value!r}; allowed: "
                                f"{', '.join(allowed)}. Fix the card's JSON")
        if self.intensity == "window" and (not self.window or len(self.window) != 2 or self.window[1] <= 0):
            raise CardError(f"preprocessing.intensity 'window' needs preprocessing.window = [center, width > 0], "
                            f"found {self.window!r}")
        if self.intensity == "percentile" and not 0 <= self.low < self.high <= 100:
            raise CardError(f"preprocessing.low/high must be percentiles with 0 <= low < high <= 100, "
                            f"found {self.low}, {self.high}")


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a (simple) dataclass annotation."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _checked(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """`data` as keyword arguments of `cls`; CardError naming an unknown field or a value of the wrong type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise CardError(f"the model card has unknown field(s) {', '.join(where + k for k in unknown)}; "
                        f"known: {', '.join(names)}")
    for key, value in data.items():
        if not _type_ok(value, hints[key]):
            expected = str(hints[key]).replace("typing.", "")
            raise CardError(f"the model card's {where}{key} is {value!r} ({type(value).__name__}); "
                            f"expected {expected}")
    return data


@dataclass(frozen=True)
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
    # Binary models: [low, high] calibrated probabilities around the threshold where a result is
    # 'indeterminate' (chosen on validation data by training); None: no band known.
    indeterminate: list[float] | None = None
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
    # Per class, the coded finding AI results report, e.g. {"pneumonia": {"scheme": "SCT", "value":
    # "233604007", "meaning": "Pneumonia"}}; a class without one gets `medui.results.codes`' default.
    finding_codes: dict[str, Any] = field(default_factory=dict)
    # Who registered it: {"subject", "name"} from the identity provider (empty: unknown, e.g. older cards)
    registered_by: dict[str, str] = field(default_factory=dict)

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
        if not isinstance(data, dict):
            raise CardError(f"a model card is a JSON object, found {type(data).__name__}")
        data = dict(data)
        data.pop("output", None)
        pre = data.pop("preprocessing", {}) or {}
        if not isinstance(pre, dict):
            raise CardError(f"the model card's preprocessing is {pre!r}; expected an object")
        missing = [k for k in ("name", "version", "class_names", "input_size", "channels", "architecture", "cam_layer")
                   if k not in data]
        if missing:
            raise CardError(f"the model card lacks {', '.join(missing)}; a card needs at least name, version, "
                            "class_names, input_size, channels, architecture and cam_layer")
        preprocessing = Preprocessing(**_checked(Preprocessing, pre, "preprocessing."))
        card = cls(**_checked(cls, data, ""), preprocessing=preprocessing)
        card.validate()
        return card

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise CardError(f"no model card at {path}; every model needs a JSON card beside its .keras file") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardError(f"the model card {path} is not valid JSON ({exc}); fix or re-create it") from exc
        except CardError as exc:
            raise CardError(f"{path}: {exc}") from exc

    def validate(self) -> None:
        """CardError when the card cannot drive preprocessing and inference."""
        if self.task not in TASKS:
            raise CardError(f"the model card's task is {self.task!r}; allowed: {', '.join(TASKS)}")
        if len(self.class_names) < 2:
            raise CardError(f"a model needs at least two class names, found {self.class_names}")
        if self.task == "binary" and len(self.class_names) != 2:
            raise CardError(f"a binary model has exactly two classes, found {len(self.class_names)}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise CardError(f"the threshold must lie strictly between 0 and 1, found {self.threshold}")
        band = self.indeterminate
        if band is not None and not (len(band) == 2 and 0.0 <= band[0] <= self.threshold <= band[1] <= 1.0):
            raise CardError(f"indeterminate must be [low, high] with 0 <= low <= threshold ({self.threshold}) <= "
                            f"high <= 1, found {band}")
        if self.channels not in (1, 3) or len(self.input_size) != 2:
            raise CardError(f"input must be [height, width] with 1 or 3 channels, "
                            f"found {self.input_size} x {self.channels}")
        self.preprocessing.validate()
        for cls, code in self.finding_codes.items():
            if cls not in self.class_names:
                raise CardError(f"finding_codes names the class {cls!r}, which the model does not have "
                                f"({', '.join(self.class_names)})")
            if not isinstance(code, dict) or not all(isinstance(code.get(k), str) and code.get(k)
                                                     for k in ("scheme", "value", "meaning")):
                raise CardError(f"finding_codes[{cls!r}] is {code!r}; expected {{\"scheme\": \"SCT\", "
                                f"\"value\": \"233604007\", \"meaning\": \"Pneumonia\"}}")
