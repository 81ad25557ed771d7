"""Glue shared by the pages and the CLI: load a registered model once, explain a slice as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medui.ai.inference import Predictor
from medui.ai.overlay import overlay_rgb
from medui.ai.preprocess import to_original
from medui.ai.registry import Entry, find, load_keras, validate
from medui.ai.saliency import Explainer
from medui.reading.display import default_window, plane_view, png_bytes, render, shows_inverted
from medui.series import Series, Window


def load_model(name: str, root: Path | None = None) -> tuple[Entry, Predictor, Explainer]:
    """Find, safely load and check a registered model; returns read-only predictor and explainer."""
    entry = find(name, root)
    model = load_keras(entry.path)
    validate(model, entry.card)
    return entry, Predictor(model, entry.card), Explainer(model, entry.card.cam_layer, entry.card.task)


def saliency_map(series: Series, index: int, method: str, predictor: Predictor, explainer: Explainer,
                 class_index: int | None = None) -> np.ndarray:
    """A saliency map on the native grid of slice `index`, in [0, 1]."""
    x, geoms = predictor.prepare(series, [index])
    if class_index is None:
        class_index = len(predictor.card.class_names) - 1
    cam = explainer.explain(method, x, class_index)[0]
    return to_original(cam, geoms[0])


def explain_series(series: Series, index: int, method: str, predictor: Predictor, explainer: Explainer,
                   window: Window | None = None, opacity: float = 0.45, colormap: str = "jet",
                   contour: float | None = 0.5) -> bytes:
    """PNG of the overlay of one method over the windowed slice."""
    view = plane_view(series, "native", index)
    base = render(series, view, window or default_window(series), shows_inverted(series))
    sal = saliency_map(series, index, method, predictor, explainer)
    return png_bytes(overlay_rgb(base, sal, opacity, colormap, contour), compression=3)
