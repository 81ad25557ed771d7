"""Saliency maps on the logits of the chosen class: Grad-CAM and its family through tf-keras-vis (the
reference), with compiled fast paths for Grad-CAM and SmoothGrad that a test holds equal to it.

Compute is kept apart from display: every method returns a float map in [0, 1] on the model input
grid; `medui.ai.preprocess.to_original` maps it onto the native image grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medui.ai.kerastypes import KerasModel, KerasTensor

METHODS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM (Faster)",
    "layercam": "LayerCAM",
    "smoothgrad": "SmoothGrad",
}
SMOOTH_SAMPLES = 20
SMOOTH_NOISE = 0.2
SCORECAM_MAX_N = 16


def _normalize(a: np.ndarray) -> np.ndarray:
    """tf-keras-vis' normalize: min-max per sample, with Keras' epsilon."""
    lo = a.min(axis=tuple(range(1, a.ndim)), keepdims=True)
    hi = a.max(axis=tuple(range(1, a.ndim)), keepdims=True)
    return np.asarray((a - lo) / (hi - lo + 1e-7))


def _zoom_to(cam: np.ndarray, size: tuple[int, int], centered: bool = False) -> np.ndarray:
    """Upsample (batch, h, w) maps. Default: exactly as tf-keras-vis (scipy zoom, corners aligned);
    centered=True: pixel-centre aligned (cv2), which puts each CAM cell over the pixels it pooled —
    corner alignment shifts the map by up to half a cell at the far edges."""
    if centered:
        import cv2

        return np.stack([cv2.resize(c.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                         for c in cam])
    from scipy.ndimage import zoom

    factors = (1.0, size[0] / cam.shape[1], size[1] / cam.shape[2])
    return np.asarray(zoom(cam, factors, order=1))


class Explainer:
    """Saliency for one model. Read-only after construction: safe to cache and share."""

    def __init__(self, model: KerasModel, cam_layer: str, task: str = "binary") -> None:
        import keras
        import tensorflow as tf

        keras.utils.disable_interactive_logging()  # tf-keras-vis calls model.predict: no progress bars on stdout
        self.model = model
        self.task = task
        self.cam_layer = cam_layer
        logits = model.get_layer("logits").output
        self.logit_model = keras.Model(model.inputs, logits, name="logit_model")
        self._grad_model = keras.Model(model.inputs, [model.get_layer(cam_layer).output, logits])
        self.input_size = (int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2]))

        def cam_parts(x: KerasTensor, sign: KerasTensor, index: KerasTensor) -> tuple[KerasTensor, KerasTensor]:
            with tf.GradientTape() as tape:
                conv, out = self._grad_model(x, training=False)
                score = sign * tf.gather(out, index, axis=1)
            grads = tape.gradient(score, conv)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1)), out

        def smooth(x: KerasTensor, sign: KerasTensor, index: KerasTensor, samples: KerasTensor,
                   noise: KerasTensor) -> KerasTensor:
            n = tf.shape(x)[0]
            axes = (1, 2, 3)
            sigma = noise * (tf.reduce_max(x, axis=axes, keepdims=True) - tf.reduce_min(x, axis=axes, keepdims=True))
            shape = tf.concat([[n * samples], tf.shape(x)[1:]], 0)
            noisy = tf.repeat(x, samples, axis=0) + tf.random.normal(shape) * tf.repeat(sigma, samples, axis=0)
            with tf.GradientTape() as tape:
                tape.watch(noisy)
                score = sign * tf.gather(self.logit_model(noisy, training=False), index, axis=1)
            grads = tf.abs(tape.gradient(score, noisy))
            grads = tf.reduce_mean(tf.reshape(grads, tf.concat([[n, samples], tf.shape(x)[1:]], 0)), axis=1)
            return tf.reduce_max(grads, axis=-1)

        self._cam_parts = tf.function(cam_parts, reduce_retracing=True)
        self._smooth = tf.function(smooth, reduce_retracing=True)

    # --- targets -------------------------------------------------------------------------
    def _target(self, class_index: int) -> tuple[float, int]:
        """(sign, logit index) of the score: a one-unit head scores class 0 as the negated logit."""
        if self.task == "binary":
            return (1.0 if class_index == 1 else -1.0), 0
        return 1.0, class_index

    def score_fn(self, class_index: int) -> Callable[[KerasTensor], KerasTensor]:
        sign, index = self._target(class_index)
        return lambda out: sign * out[:, index]

    # --- fast paths ----------------------------------------------------------------------
    def gradcam(self, x: np.ndarray, class_index: int = 1, centered: bool = True) -> np.ndarray:
        """Compiled Grad-CAM. With centered=False it is numerically equal to tf-keras-vis' Gradcam
        (tested); the default upsamples with pixel-centre alignment, which is what is displayed."""
        return self.gradcam_with_logits(x, class_index, centered)[0]

    def gradcam_with_logits(self, x: np.ndarray, class_index: int = 1,
                            centered: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps and the logits from the same compiled pass: a prediction with its
        explanation costs one forward and one partial backward pass."""
        import tensorflow as tf

        sign, index = self._target(class_index)
        cam, logits = self._cam_parts(tf.constant(x, tf.float32), tf.constant(sign), tf.constant(index))
        return _normalize(_zoom_to(np.asarray(cam), self.input_size, centered)), np.asarray(logits, np.float64)

    def smoothgrad(self, x: np.ndarray, class_index: int = 1, samples: int = SMOOTH_SAMPLES,
                   noise: float = SMOOTH_NOISE) -> np.ndarray:
        """SmoothGrad with all noisy samples in one compiled batch."""
        import tensorflow as tf

        sign, index = self._target(class_index)
        grads = self._smooth(tf.constant(x, tf.float32), tf.constant(sign), tf.constant(index),
                             tf.constant(samples), tf.constant(noise, tf.float32))
        return _normalize(np.asarray(grads))

    # --- reference implementations (tf-keras-vis) ----------------------------------------
    def reference(self, method: str, x: np.ndarray, class_index: int = 1) -> np.ndarray:
        """tf-keras-vis, always on the logits and always at the card's CAM layer."""
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        score = self.score_fn(class_index)
        common = dict(penultimate_layer=self.cam_layer, seek_penultimate_conv_layer=False)
        if method == "gradcam":
            return np.asarray(Gradcam(self.logit_model, clone=False)(score, x, **common))
        if method == "gradcam++":
            return np.asarray(GradcamPlusPlus(self.logit_model, clone=False)(score, x, **common))
        if method == "layercam":
            return np.asarray(Layercam(self.logit_model, clone=False)(score, x, **common))
        if method == "smoothgrad":
            return np.asarray(Saliency(self.logit_model, clone=False)(score, x, smooth_samples=SMOOTH_SAMPLES,
                                                                       smooth_noise=SMOOTH_NOISE))
        if method == "scorecam":
            model, score = self._scorecam_model(class_index)
            n = min(SCORECAM_MAX_N, int(self.model.get_layer(self.cam_layer).output.shape[-1]))
            return np.asarray(Scorecam(model, clone=False)(score, x, max_N=n, batch_size=16, **common))
        raise ValueError(f"unknown saliency method '{method}'; choose one of {', '.join(METHODS)}")

    def _scorecam_model(self, class_index: int) -> tuple[KerasModel, Any]:
        """Score-CAM softmaxes the model output; a one-unit head would make every weight 1. Give it the
        two logits [0, z] instead: their softmax is exactly [1 - sigmoid(z), sigmoid(z)]."""
        import keras
        from tf_keras_vis.utils.scores import CategoricalScore

        if self.task != "binary":
            return self.logit_model, CategoricalScore(class_index)
        z = self.logit_model.outputs[0]
        two = keras.layers.Concatenate(name="two_logits")([keras.ops.zeros_like(z), z])
        return keras.Model(self.logit_model.inputs, two), CategoricalScore(class_index)

    # --- entry point ---------------------------------------------------------------------
    def explain(self, method: str, x: np.ndarray, class_index: int = 1) -> np.ndarray:
        """Maps (batch, h, w) in [0, 1] on the model input grid."""
        if method == "gradcam":
            return self.gradcam(x, class_index)
        if method == "smoothgrad":
            return self.smoothgrad(x, class_index)
        return self.reference(method, x, class_index)
