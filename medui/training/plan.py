"""What a training run will actually train on this machine, and from which weights: one decision,
shown by the Train page before the click, logged first by the job and written into the model card.

The recommended default is DenseNet121 (GPU) or MobileNetV2 (CPU) from ImageNet weights. Keras keeps
those weights in its cache (~/.keras/models, or $KERAS_HOME/models) after one download; when they
are neither cached nor downloadable (offline), a randomly initialised backbone needs far more data than
a fine-tuning set, so the default becomes the small CNN trained from scratch. An explicitly chosen
backbone is kept, and starts from random weights then. The check is quick: file look-ups and one
connection attempt with a short timeout, made only when some weights are missing.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medui.ai.architectures import ARCHITECTURES
from medui.errors import MedUIError

WEIGHTS_HOST = ("storage.googleapis.com", 443)  # where Keras Applications download ImageNet weights from
SOURCES = ("imagenet-cached", "imagenet-download", "file", "random", "scratch", "parent")
FALLBACK = "small_cnn"


@dataclass(frozen=True)
class ModelPlan:
    arch: str  # architecture that will be trained (the parent's, when fine-tuning)
    weights_source: str  # one of SOURCES
    reason: str  # why, when it is not what the user may expect; "" otherwise
    weights: str | None = None  # what the builder gets: "imagenet", a weights file, or None
    parent: str | None = None  # fine-tuning: the registered model

    def text(self) -> str:
        """E.g. 'MobileNetV2 from ImageNet weights (cached)' or 'small CNN from scratch: ImageNet …'."""
        title = ARCHITECTURES[self.arch]["title"] if self.arch in ARCHITECTURES else self.arch
        start = {"imagenet-cached": "from ImageNet weights (cached)",
                 "imagenet-download": "from ImageNet weights (downloaded once)",
                 "file": f"from the weights file {self.weights}",
                 "random": "from random weights",
                 "scratch": "from scratch",
                 "parent": f"fine-tuned from {self.parent}"}[self.weights_source]
        return f"{title} {start}" + (f": {self.reason}" if self.reason else "")

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "weights_source": self.weights_source, "reason": self.reason,
                "parent": self.parent, "text": self.text()}


def keras_cache() -> list[Path]:
    """Where Keras looks for downloaded weights: $KERAS_HOME (default ~/.keras)/models, and /tmp/.keras/models
    (its fallback when that folder is not writable)."""
    home = Path(os.environ.get("KERAS_HOME") or Path("~") / ".keras").expanduser()
    return [home / "models", Path("/tmp/.keras/models")]


def cached_weights(arch: str) -> Path | None:
    """The cached no-top ImageNet weights file of a backbone, None when Keras would have to download it."""
    name = ARCHITECTURES[arch]["imagenet_file"] if arch in ARCHITECTURES else None
    if not name:
        return None
    return next((d / name for d in keras_cache() if (d / name).is_file()), None)


def download_possible(timeout: float = 1.0) -> bool:
    """Whether the weights host answers within `timeout` seconds (name look-up included)."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(WEIGHTS_HOST, timeout=timeout).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 0.2)
    return bool(answer and answer[0])


def default_arch(gpu: bool) -> str:
    """What a user gets with neither a base model nor an architecture (when its weights can be had)."""
    return "densenet121" if gpu else "mobilenet_v2"


def plan_model(arch: str | None, base: str | None, gpu: bool, weights: str | None = "imagenet",
               online: bool | None = None, models_dir: Path | None = None) -> ModelPlan:
    """What will be trained: `base` (a registered model) is fine-tuned; else `arch`, else the recommended
    backbone for this machine. `online` None: checked (briefly) only when ImageNet weights are not cached."""
    if base:
        from medui.ai.registry import find

        try:
            entry = find(base, models_dir)
        except MedUIError as exc:
            return ModelPlan("unknown", "parent", f"the model could not be found ({exc})", None, base)
        return ModelPlan(entry.card.architecture, "parent", "", None, entry.id)
    chosen = arch or default_arch(gpu)
    if chosen not in ARCHITECTURES:
        raise MedUIError(f"unknown architecture '{chosen}'; choose one of {', '.join(ARCHITECTURES)}")
    if not ARCHITECTURES[chosen]["pretrained"]:
        return ModelPlan(chosen, "scratch", "", None)
    if weights is None:
        return ModelPlan(chosen, "random", "no pretrained weights asked for", None)
    if weights != "imagenet":
        if Path(weights).is_file():
            return ModelPlan(chosen, "file", "", weights)
        return ModelPlan(chosen, "random", f"the weights file {weights} does not exist", None)
    if cached_weights(chosen) is not None:
        return ModelPlan(chosen, "imagenet-cached", "", "imagenet")
    if download_possible() if online is None else online:
        return ModelPlan(chosen, "imagenet-download", "", "imagenet")
    if arch is None:
        title = ARCHITECTURES[chosen]["title"]
        return ModelPlan(FALLBACK, "scratch", f"ImageNet weights for {title} are not available offline "
                                              "(a random backbone needs far more data)", None)
    return ModelPlan(chosen, "random", "ImageNet weights are not available offline", None)
