"""Streaming tf.data input: batches read from the prepared-image cache (`medui.training.shards`).

Only sample positions are shuffled (8 bytes each, a full shuffle of the split), then each batch's
records are read from the shards and augmented. Memory holds a few batches, whatever the dataset's
size. With the same seed the order equals the in-memory pipeline's (`medui.training.fit.pipeline`
shuffles the images with the same buffer and seed), so the same batches come out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from medui.ai.kerastypes import KerasModel, TFDataset
from medui.training.fit import augmented, targets

if TYPE_CHECKING:
    from medui.training.shards import ShardCache


def batches(fetch: Callable[[np.ndarray], np.ndarray], shape: tuple[int, int, int], y: np.ndarray, batch: int,
            augment: dict[str, float] | None, seed: int, n_classes: int) -> TFDataset:
    """tf.data over positions 0..len(y)-1: `fetch(positions)` -> float32 (n, *shape). augment None: in
    order, as for validation and evaluation; else shuffled each epoch, augmented, prefetched."""
    import tensorflow as tf

    target = targets(y, n_classes)
    n = len(y)

    def load(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return fetch(positions), target[positions]

    def read(positions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, t = tf.numpy_function(load, [positions], (tf.float32, tf.float32), stateful=False)
        x.set_shape((None, *shape))
        t.set_shape((None, *target.shape[1:]))
        return x, t

    order = tf.data.Dataset.range(n)
    if augment is not None:
        order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = order.batch(batch).map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment is None:
        return ds.prefetch(tf.data.AUTOTUNE)
    return augmented(ds, augment, seed)


def stream(cache: ShardCache, records: Sequence[int], y: np.ndarray, batch: int, augment: dict[str, float] | None,
           seed: int, n_classes: int) -> TFDataset:
    """The records `records` of `cache` (labels `y`) as a tf.data pipeline (see `batches`)."""
    rows = np.asarray(records, np.int64)
    return batches(lambda p: cache.read(rows[p]), cache.shape, y, batch, augment, seed, n_classes)


def inputs(cache: ShardCache, records: Sequence[int], batch: int = 32) -> TFDataset:
    """Model inputs only, in order (prediction: calibration and evaluation)."""
    y = np.zeros(len(records), np.int32)
    return stream(cache, records, y, batch, None, 0, 2).map(lambda x, _: x)


def logits(model: KerasModel, cache: ShardCache, records: Sequence[int], batch: int = 32) -> np.ndarray:
    """The model's logits (float64) for the records `records`, streamed from the cache."""
    import keras

    logit_model = keras.Model(model.inputs, model.get_layer("logits").output)
    return np.asarray(logit_model.predict(inputs(cache, records, batch), verbose=0), np.float64)
