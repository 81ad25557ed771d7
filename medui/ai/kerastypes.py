"""Names for Keras objects in type hints. Keras ships no type information, so these are `Any` to
mypy, but they say what a parameter is where a bare `Any` would not."""

from __future__ import annotations

from typing import Any, TypeAlias

KerasModel: TypeAlias = Any  # keras.Model
KerasLayer: TypeAlias = Any  # keras.layers.Layer
KerasTensor: TypeAlias = Any  # a symbolic keras.KerasTensor (functional graphs) or an eager tensor
TFDataset: TypeAlias = Any  # tf.data.Dataset
