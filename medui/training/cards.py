"""The one way a training run becomes a model card: the trainer (`runs.py`) and the demo builder
(`medui.synthetic.demo`) both call `card_for_run`, so every card carries the same metrics schema."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from medui.ai.card import ModelCard

METRIC_KEYS = ("n", "auc", "auc_ci", "sensitivity", "specificity", "ppv", "npv", "accuracy", "threshold",
               "confusion_matrix", "classes", "ece")


def jsonable(obj: Any) -> Any:
    """NaN/inf as None, numpy scalars as Python numbers, tuples as lists (strict JSON)."""
    if isinstance(obj, float) and (np.isnan(obj) or np.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    return obj


def _rounded(obj: Any, digits: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def run_metrics(evaluation: dict[str, Any], split: str, calibration_warning: str | None = None) -> dict[str, Any]:
    """The card's metrics: the summary of `fit.evaluate_arrays` on held-out data and what that data was;
    with `calibration_warning` (evaluation failed: see `metrics.calibration_check`) when there is one."""
    summary = {k: _rounded(jsonable(evaluation.get(k))) for k in METRIC_KEYS}
    return {**summary, "split": split, **({"calibration_warning": calibration_warning} if calibration_warning else {})}


def card_for_run(template: ModelCard, *, name: str, version: int, classes: list[str], evaluation: dict[str, Any],
                 split: str, threshold: float, threshold_method: str, temperature: float | None,
                 training_data: dict[str, Any], training: dict[str, Any], parent: str | None = None,
                 modalities: list[str] | None = None, limitations: str | None = None,
                 intended_use: str | None = None, demo: bool = False, indeterminate: list[float] | None = None,
                 calibration_warning: str | None = None,
                 compared: dict[str, dict[str, Any]] | None = None) -> ModelCard:
    """A new card from `template` (architecture, input, preprocessing, CAM layer) and what the run
    measured. `temperature` (binary models) rescales logits before the sigmoid in inference;
    `indeterminate` is the validation band around the threshold (`metrics.indeterminate_band`); a
    `calibration_warning` (evaluation failed) goes into the metrics and heads the limitations;
    `compared` ({model id: metrics}) holds other models (the parent, the promoted model of the task)
    evaluated on the very same held-out images, for a fair side-by-side comparison."""
    extra = {"temperature": float(temperature)} if temperature is not None else {}
    limits = template.limitations if limitations is None else limitations
    if calibration_warning:
        limits = f"EVALUATION FAILED: {calibration_warning}. {limits}".strip()
    card = dataclasses.replace(
        template, name=name, version=version, class_names=list(classes),
        task="binary" if len(classes) == 2 else "multiclass", threshold=float(threshold),
        threshold_method=threshold_method, parent=parent, demo=demo,
        created=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        indeterminate=[float(v) for v in indeterminate] if indeterminate is not None else None,
        metrics={**run_metrics(evaluation, split, calibration_warning),
                 **({"compared": jsonable(compared)} if compared else {})}, training_data=jsonable(training_data),
        training=jsonable({**extra, **training}),
        modalities=template.modalities if modalities is None else list(modalities),
        limitations=limits,
        intended_use=intended_use or template.intended_use)
    card.validate()
    return card
