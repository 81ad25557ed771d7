"""Diagnose use cases, shared by the Diagnose page and `python -m medui predict`:
load a registered model, score a series, explain one slice as an overlay."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

from medui.accounts import audit
from medui.accounts.actor import Actor, current, require
from medui.ai.inference import Prediction, Predictor
from medui.ai.overlay import COLORMAPS, overlay_rgb
from medui.ai.preprocess import Geometry, to_original
from medui.ai.registry import Entry, find, load_keras, validate
from medui.ai.saliency import METHODS, Explainer
from medui.errors import MedUIError
from medui.reading.display import default_window, display_order, plane_view, png_bytes, render, shows_inverted
from medui.series import Series, Window
from medui.usecases.reading import series_ids


class LoadedModel(NamedTuple):
    """A registered model ready to use; read-only, so one copy can serve every session."""

    entry: Entry
    predictor: Predictor
    explainer: Explainer


@dataclass(frozen=True)
class Style:
    """How an overlay looks: the slice's window (None: the series' default), the map's opacity,
    colour map and contour level (None: no contour)."""

    window: Window | None = None
    opacity: float = 0.45
    colormap: str = "jet"
    contour: float | None = 0.5


@dataclass(frozen=True, eq=False)
class Diagnosis:
    """A scored series. It keeps the model inputs (one per slice) and where each slice lies in
    them, so overlays never prepare the series again.

    `prediction` (and `batch`) hold the slices in native order (as sorted along their normal); every
    index this class and the functions below take or give is a display index: the Viewer's numbering
    (`medui.reading.display.display_order`), so slice 12 is the same anatomy on every page and in
    the command line."""

    series: Series
    model: LoadedModel
    prediction: Prediction
    batch: np.ndarray  # (slices, h, w, c) model inputs
    geometries: tuple[Geometry, ...]

    @property
    def class_names(self) -> list[str]:
        return list(self.model.entry.card.class_names)

    @cached_property
    def order(self) -> np.ndarray:
        """Native slice index of each display index."""
        return display_order(self.series)

    @property
    def slice_scores(self) -> list[float] | None:
        """The score of each slice in display order (None for a single image)."""
        scores = self.prediction.slice_scores
        return None if scores is None else [scores[int(i)] for i in self.order]

    @property
    def peak_slice(self) -> int:
        """The display index of the slice whose score is the study score."""
        return int(np.nonzero(self.order == self.prediction.peak_slice)[0][0])

    def native_index(self, index: int) -> int:
        """The native slice (row of `batch`) shown as display index `index`."""
        n = len(self.geometries)
        if not 0 <= index < n:
            raise MedUIError(f"slice {index + 1} does not exist: the series has {n} slice(s); choose 1 to {n}")
        return int(self.order[index])

    @property
    def predicted_class(self) -> int:
        """The class an overlay explains by default: the positive class of a binary model (its
        score is what the threshold is applied to), the predicted class of a multi-class model."""
        card = self.model.entry.card
        if card.task == "binary":
            return 1
        return card.class_names.index(self.prediction.label)


FLAT_RANGE = 1e-3  # a normalised map whose values span less than this shows nothing


@dataclass(frozen=True, eq=False)
class OverlayResult:
    """One saliency overlay: the map on the slice's native grid, and the blended RGB picture."""

    index: int  # display numbering
    method: str
    class_index: int
    class_name: str
    saliency: np.ndarray  # float in [0, 1], slice rows x cols
    rgb: np.ndarray  # uint8 RGB

    @property
    def flat(self) -> bool:
        """The map is empty or constant: the model's evidence for this class is flat on this image."""
        return float(np.ptp(self.saliency)) < FLAT_RANGE if self.saliency.size else True

    def png(self) -> bytes:
        return png_bytes(self.rgb, compression=3)


def load_model(name: str, root: Path | None = None) -> LoadedModel:
    """Find, safely load and check a registered model; returns read-only predictor and explainer."""
    entry = find(name, root)
    model = load_keras(entry.path)
    validate(model, entry.card)
    return LoadedModel(entry, Predictor(model, entry.card), Explainer(model, entry.card.cam_layer, entry.card.task))


def score(series: Series, model: LoadedModel, actor: Actor | None = None,
          memo: Callable[[Callable[[], Diagnosis]], Diagnosis] | None = None) -> Diagnosis:
    """Prepare every slice once through the model card and score the series. Needs the 'diagnose'
    permission; recorded in the audit trail (series UIDs and model id, not the result). `memo`
    runs the computation or hands back the one another session made (a server-wide cache)."""
    who = current(actor)
    with audit.attempt(audit.SCORE, who, series_ids(series), {"model": model.entry.id}):
        require(who, "diagnose", "scoring a series")

        def run() -> Diagnosis:
            batch, geoms = model.predictor.prepare(series)
            return Diagnosis(series, model, model.predictor.predict_prepared(batch, series), batch, tuple(geoms))

        return memo(run) if memo is not None else run()


def _class_index(diagnosis: Diagnosis, class_index: int | None) -> int:
    if class_index is None:
        return diagnosis.predicted_class
    names = diagnosis.class_names
    if not 0 <= class_index < len(names):
        raise MedUIError(f"class {class_index} does not exist: the model {diagnosis.model.entry.id} has "
                         f"{len(names)} classes ({', '.join(names)}); choose 0 to {len(names) - 1}")
    return class_index


def saliency(diagnosis: Diagnosis, index: int, method: str, class_index: int | None = None,
             actor: Actor | None = None,
             memo: Callable[[Callable[[], np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
    """The map of `method` for slice `index` (display numbering) on the slice's native grid, in
    [0, 1]; it explains `class_index`, by default the predicted class (`Diagnosis.predicted_class`).
    Needs the 'diagnose' permission; recorded in the audit trail. `memo`: as for `score`."""
    who = current(actor)
    details = {"model": diagnosis.model.entry.id, "method": method, "slice": index + 1}
    with audit.attempt(audit.EXPLAIN, who, series_ids(diagnosis.series), details):
        require(who, "diagnose", "explaining a score")
        native = diagnosis.native_index(index)
        if method not in METHODS:
            raise MedUIError(f"unknown saliency method '{method}'; choose one of {', '.join(METHODS)}")
        cls = _class_index(diagnosis, class_index)

        def run() -> np.ndarray:
            cam = diagnosis.model.explainer.explain(method, diagnosis.batch[native:native + 1], cls)[0]
            return to_original(cam, diagnosis.geometries[native])

        return memo(run) if memo is not None else run()


def overlay(diagnosis: Diagnosis, index: int, method: str, style: Style = Style(), class_index: int | None = None,
            saliency_map: np.ndarray | None = None, actor: Actor | None = None) -> OverlayResult:
    """The saliency of `method` for slice `index` (display numbering) blended over the windowed slice.

    `saliency_map`: a map `saliency()` computed before for the same slice, method and class (a
    display change then costs no new computation); a map computed here is audited as `saliency` does."""
    if style.colormap not in COLORMAPS:
        raise MedUIError(f"unknown colour map '{style.colormap}'; choose one of {', '.join(COLORMAPS)}")
    cls = _class_index(diagnosis, class_index)
    sal = saliency(diagnosis, index, method, cls, actor) if saliency_map is None else saliency_map
    series = diagnosis.series
    view = plane_view(series, "native", diagnosis.native_index(index))
    base = render(series, view, style.window or default_window(series), shows_inverted(series))
    rgb = overlay_rgb(base, sal, style.opacity, style.colormap, style.contour)
    return OverlayResult(index, method, cls, diagnosis.class_names[cls], sal, rgb)


def export_overlay(diagnosis: Diagnosis, result: OverlayResult, actor: Actor | None = None) -> bytes:
    """An overlay as PNG for the user to keep (a download button's data, made when it is clicked): the
    'export-result' row says which series, model, method and slice left the server, and for whom."""
    who = current(actor)
    details = {"model": diagnosis.model.entry.id, "method": result.method, "slice": result.index + 1}
    with audit.attempt(audit.EXPORT_RESULT, who, series_ids(diagnosis.series), details):
        require(who, "export-result", "exporting a result")
        return result.png()
