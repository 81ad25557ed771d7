"""Scores from a registered model: a 2-D image gives class probabilities, the label at the card's
threshold and the margin to it; a volume gives a score per slice (batched) and a study score.

The study score of a volume is the maximum slice score: a finding on any slice makes the study
positive, which is how a reader would triage it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medui.ai.card import ModelCard
from medui.ai.kerastypes import KerasModel
from medui.ai.preprocess import Geometry, prepare
from medui.series import Series

BATCH = 32


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


@dataclass
class Prediction:
    """The result for one series (a 2-D image is a one-slice series)."""

    probabilities: dict[str, float]
    label: str
    threshold: float
    margin: float  # positive-class probability minus threshold (binary); top-1 minus top-2 otherwise
    slice_scores: list[float] | None = None
    peak_slice: int = 0
    warnings: list[str] = field(default_factory=list)
    # The score lies in the card's indeterminate band around the threshold (or, without a band, so
    # close to the threshold that the shown margin rounds to zero): the label is not to be relied on.
    indeterminate: bool = False
    band: tuple[float, float] | None = None  # the card's band, when it has one

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"probabilities": self.probabilities, "label": self.label, "threshold": self.threshold,
               "margin": round(self.margin, 6), "indeterminate": self.indeterminate}
        if self.band is not None:
            out["indeterminate_band"] = list(self.band)
        if self.slice_scores is not None:
            out["slice_scores"] = [round(s, 6) for s in self.slice_scores]
            out["peak_slice"] = self.peak_slice
        if self.warnings:
            out["warnings"] = self.warnings
        return out


MARGIN_DECIMALS = 3  # the precision margins are shown at


def is_indeterminate(score: float, margin: float, band: tuple[float, float] | None) -> bool:
    """Inside the validation-derived band when the card has one; else a margin that rounds to zero."""
    if band is not None:
        return band[0] <= score <= band[1]
    return round(abs(margin), MARGIN_DECIMALS) == 0


class Predictor:
    """A read-only wrapper of a model and its card; safe to share between sessions."""

    def __init__(self, model: KerasModel, card: ModelCard) -> None:
        import keras
        import tensorflow as tf

        self.model = model
        self.card = card
        self.logit_model = keras.Model(model.inputs, model.get_layer("logits").output, name="logit_model")
        self._forward = tf.function(lambda x: self.logit_model(x, training=False), reduce_retracing=True)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        out = [np.asarray(self._forward(batch[i:i + BATCH])) for i in range(0, len(batch), BATCH)]
        return np.concatenate(out, axis=0).astype(np.float64)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: temperature scaling from the card, then sigmoid/softmax."""
        t = float(self.card.training.get("temperature", 1.0) or 1.0)
        if self.card.task == "binary":
            p = _sigmoid(logits[:, 0] / t)
            return np.stack([1 - p, p], axis=1)
        return _softmax(logits / t)

    def prepare(self, series: Series, slices: list[int] | None = None) -> tuple[np.ndarray, list[Geometry]]:
        idx = range(series.n_slices) if slices is None else slices
        invert = series.photometric == "MONOCHROME1"
        prepared = [prepare(series.pixels[i], self.card, invert) for i in idx]
        return np.stack([p[0] for p in prepared]), [p[1] for p in prepared]

    def fit_warnings(self, series: Series) -> list[str]:
        card, out = self.card, list[str]()
        if card.modalities and series.modality not in card.modalities:
            out.append(f"this model was made for {'/'.join(card.modalities)} images, not {series.modality}: "
                       "its score may be meaningless here")
        if card.body_parts and series.body_part and series.body_part.upper() not in card.body_parts:
            out.append(f"this model was made for {'/'.join(card.body_parts)}, the scan says {series.body_part}")
        return out

    def predict(self, series: Series) -> Prediction:
        batch, _ = self.prepare(series)
        return self.predict_prepared(batch, series)

    def predict_prepared(self, batch: np.ndarray, series: Series) -> Prediction:
        """The prediction for `batch`, the output of `prepare(series)` (prepared once by the caller)."""
        return self._summarise(self.probabilities(self.logits(batch)), series)

    def _summarise(self, probs: np.ndarray, series: Series) -> Prediction:
        card = self.card
        names = card.class_names
        if card.task == "binary":
            scores = probs[:, 1]
            peak = int(np.argmax(scores))
            study = probs[peak]
            p = float(study[1])
            label = names[1] if p >= card.threshold else names[0]
            margin = p - card.threshold
        else:
            peak = int(np.argmax(probs.max(axis=1)))
            study = probs.max(axis=0) / probs.max(axis=0).sum()
            order = np.argsort(study)[::-1]
            label, margin = names[int(order[0])], float(study[order[0]] - study[order[1]])
            scores = probs.max(axis=1)
        probabilities = {n: round(float(v), 6) for n, v in zip(names, study, strict=True)}
        band = (float(card.indeterminate[0]), float(card.indeterminate[1])) \
            if card.task == "binary" and card.indeterminate else None
        result = Prediction(probabilities, label, float(card.threshold), float(margin),
                            warnings=self.fit_warnings(series), peak_slice=peak,
                            indeterminate=is_indeterminate(float(study[-1]), float(margin), band), band=band)
        if series.n_slices > 1:
            result.slice_scores = [float(v) for v in scores]
        return result
