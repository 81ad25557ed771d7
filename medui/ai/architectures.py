"""Model builders. Every model is one flat functional graph ending in a `logits` Dense layer and a
separate `probabilities` activation, so the CAM layer stays addressable and scores are taken on logits.

Inputs are always images in [0, 1] (see `medui.ai.preprocess`); what a backbone expects
(ImageNet scaling) is done by layers inside the graph, so the card's preprocessing stays the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TypedDict

from medui.ai.kerastypes import KerasModel, KerasTensor
from medui.errors import MedUIError, WeightsUnavailableError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class Built:
    model: KerasModel
    cam_layer: str
    notes: list[str]


BN_MOMENTUM = 0.9  # Keras Applications use 0.99, which kept validation predictions stuck when training here


def _head(keras: ModuleType, features: KerasTensor, n_classes: int, dropout: float = 0.2) -> KerasTensor:
    x = keras.layers.Dropout(dropout, name="head_dropout")(features) if dropout else features
    units = 1 if n_classes == 2 else n_classes
    logits = keras.layers.Dense(units, name="logits")(x)
    act = "sigmoid" if n_classes == 2 else "softmax"
    return keras.layers.Activation(act, name="probabilities", dtype="float32")(logits)


def seed_cnn(size: tuple[int, int] = (64, 64), channels: int = 3, n_classes: int = 2) -> Built:
    """The original design: Conv2D 32 -> MaxPool -> Flatten -> Dense (64x64x3)."""
    import keras

    inputs = keras.Input((*size, channels), name="image")
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return Built(keras.Model(inputs, _head(keras, x, n_classes, dropout=0), name="seed_cnn"), "conv", [])


def _trunk(keras: ModuleType, inputs: KerasTensor) -> KerasTensor:
    """Four conv blocks with batch normalisation; pooling after the first two, so the last block keeps
    1/4 of the input resolution; dilation in the last block restores the receptive field."""
    x = inputs
    blocks = ((16, 1, 1), (32, 2, 1), (64, 2, 1), (128, 2, 2))  # (filters, convolutions, dilation)
    for k, (filters, convs, dilation) in enumerate(blocks):
        for j in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, use_bias=False,
                                    name=f"b{k}_conv{j}")(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{k}_bn{j}")(x)
            last = k == len(blocks) - 1 and j == convs
            x = keras.layers.Activation("relu", name="cam" if last else f"b{k}_relu{j}")(x)
        if k < 2:
            x = keras.layers.MaxPooling2D(name=f"b{k}_pool")(x)
    return x


def small_cnn(size: tuple[int, int] = (128, 128), channels: int = 1, n_classes: int = 2, pooling: str = "avg") -> Built:
    """Four conv blocks with batch normalisation and global pooling; CAM ('cam') at 1/4 resolution."""
    import keras

    inputs = keras.Input((*size, channels), name="image")
    x = _trunk(keras, inputs)
    pool = keras.layers.GlobalMaxPooling2D if pooling == "max" else keras.layers.GlobalAveragePooling2D
    x = pool(name="global_pool")(x)
    return Built(keras.Model(inputs, _head(keras, x, n_classes), name="small_cnn"), "cam", [])


def evidence_cnn(size: tuple[int, int] = (128, 128), channels: int = 1, n_classes: int = 2) -> Built:
    """The small CNN trunk, then a one-channel evidence map per class ('evidence', 1/4 resolution) whose
    peak is the score (multiple-instance style). The map is the model's own localisation, so Grad-CAM
    on it shows exactly the evidence the score rests on; the demo model uses it for focal lesions."""
    import keras

    inputs = keras.Input((*size, channels), name="image")
    x = _trunk(keras, inputs)
    maps = 1 if n_classes == 2 else n_classes
    evidence = keras.layers.Conv2D(maps, 1, name="evidence")(x)  # linear: a ReLU here can die at start
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(evidence)
    return Built(keras.Model(inputs, _head(keras, x, n_classes, dropout=0), name="evidence_cnn"), "evidence", [])


Builder = Callable[..., Built]


def _backbone(app: Callable[[ModuleType], Callable[..., KerasModel]],
              scale: Callable[[ModuleType, KerasTensor], KerasTensor], cam_layer: str, name: str) -> Builder:
    def build(size: tuple[int, int] = (224, 224), channels: int = 3, n_classes: int = 2,
              weights: str | None = "imagenet", allow_random: bool = True) -> Built:
        import keras

        inputs = keras.Input((*size, 3), name="image")
        scaled = scale(keras, inputs)
        notes: list[str] = []
        try:
            base = app(keras)(include_top=False, weights=weights, input_tensor=scaled, input_shape=(*size, 3))
        except Exception as exc:  # download failures surface as many exception types
            if weights is None:
                raise
            what = "download ImageNet weights" if weights == "imagenet" else f"load weights from {weights}"
            message = (f"Could not {what} for {name} ({type(exc).__name__}: {str(exc)[:160]}). "
                       "Online, Keras downloads them once into ~/.keras/models; offline, pass a local weights "
                       "file (--weights PATH, the Keras '.weights.h5' of the backbone without its top) "
                       "or train from random initialisation.")
            if not allow_random:
                raise WeightsUnavailableError(message) from exc
            notes.append(message + " Continuing from random initialisation.")
            base = app(keras)(include_top=False, weights=None, input_tensor=scaled, input_shape=(*size, 3))
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = BN_MOMENTUM
        x = keras.layers.GlobalAveragePooling2D(name="gap")(base.output)
        return Built(keras.Model(inputs, _head(keras, x, n_classes), name=name), cam_layer, notes)
    build.__doc__ = f"{name} backbone (Keras Applications), flat graph, CAM layer '{cam_layer}'."
    return build


def _to_minus1_1(keras: ModuleType, x: KerasTensor) -> KerasTensor:
    return keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)


def _imagenet_norm(keras: ModuleType, x: KerasTensor) -> KerasTensor:
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return keras.layers.Normalization(mean=mean, variance=[s * s for s in std], name="imagenet_norm")(x)


def _to_255(keras: ModuleType, x: KerasTensor) -> KerasTensor:
    return keras.layers.Rescaling(255.0, name="to_0_255")(x)


mobilenet_v2 = _backbone(lambda k: k.applications.MobileNetV2, _to_minus1_1, "out_relu", "mobilenet_v2")
efficientnet_b0 = _backbone(lambda k: k.applications.EfficientNetB0, _to_255, "top_activation", "efficientnet_b0")
densenet121 = _backbone(lambda k: k.applications.DenseNet121, _imagenet_norm, "relu", "densenet121")

class Spec(TypedDict):
    """A registered architecture: its builder, default input size and channels, and whether it has
    a pretrained (ImageNet) backbone."""

    build: Builder
    size: tuple[int, int]
    channels: int
    pretrained: bool
    title: str  # what the user reads, e.g. "MobileNetV2"
    imagenet_file: str | None  # the file Keras caches under ~/.keras/models for the no-top ImageNet weights


ARCHITECTURES: dict[str, Spec] = {
    "seed_cnn": {"build": seed_cnn, "size": (64, 64), "channels": 3, "pretrained": False, "title": "seed CNN",
                 "imagenet_file": None},
    "small_cnn": {"build": small_cnn, "size": (128, 128), "channels": 1, "pretrained": False, "title": "small CNN",
                  "imagenet_file": None},
    "evidence_cnn": {"build": evidence_cnn, "size": (128, 128), "channels": 1, "pretrained": False,
                     "title": "evidence CNN", "imagenet_file": None},
    "mobilenet_v2": {"build": mobilenet_v2, "size": (224, 224), "channels": 3, "pretrained": True,
                     "title": "MobileNetV2",
                     "imagenet_file": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"},
    "efficientnet_b0": {"build": efficientnet_b0, "size": (224, 224), "channels": 3, "pretrained": True,
                        "title": "EfficientNetB0", "imagenet_file": "efficientnetb0_notop.h5"},
    "densenet121": {"build": densenet121, "size": (224, 224), "channels": 3, "pretrained": True,
                    "title": "DenseNet121", "imagenet_file": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"},
}


def build(arch: str, n_classes: int = 2, size: tuple[int, int] | None = None, weights: str | None = "imagenet",
          allow_random: bool = True) -> Built:
    """Build a registered architecture. `weights` applies to pretrained backbones only."""
    if arch not in ARCHITECTURES:
        raise MedUIError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    shape = (int((size or spec["size"])[0]), int((size or spec["size"])[1]))
    if spec["pretrained"]:
        return spec["build"](shape, 3, n_classes, weights=weights, allow_random=allow_random)
    return spec["build"](shape, spec["channels"], n_classes)
