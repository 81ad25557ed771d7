"""Viewer widgets: upload panel, series picker, the reading view (the in-browser reader, or the
server-rendered slice viewer when asked for or when the browser cannot hold the series) and header table."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from medui.reading import header as deid
from medui.reading.display import (
    CT_PRESETS,
    PLANES,
    PlaneView,
    native_plane,
    pixel_spacing_known,
    plane_count,
    plane_view,
    render,
    series_auto_window,
    shows_inverted,
    slice_label,
    thumbnail,
)
from medui.reading.samples import SAMPLES, sample_path
from medui.series import Series, Window
from medui.ui import pacs, reader, state
from medui.ui.figures import slice_figure

UPLOAD_TYPES = None  # any file: DICOM often has no extension
AUTO = "Auto (1st–99th percentile)"
AUTO_CT = "Auto (5th–95th percentile of the body, above -500 HU)"
GENERATION = "viewer.upload-generation"  # bumped to empty the uploaders once their files are read


def upload_panel() -> None:
    """Files, a folder or a zip; or a bundled sample. New uploads are read once."""
    files_tab, folder_tab, sample_tab, pacs_tab = st.tabs(["Files or zip", "Folder", "Try a sample", "From PACS"])
    # The uploaders are emptied (new key) once their files are read: the series stay in the session.
    generation = st.session_state.setdefault(GENERATION, 0)
    with files_tab:
        files = st.file_uploader("DICOM (single, series, multi-frame, compressed), NIfTI, PNG/JPEG/TIFF, or a zip",
                                 accept_multiple_files=True, key=f"viewer.upload-files.{generation}")
        _read_uploads(files, "files")
    with folder_tab:
        folder = st.file_uploader("A folder of DICOM files (sub-folders included)",
                                  accept_multiple_files="directory", key=f"viewer.upload-folder.{generation}")
        _read_uploads(folder, "folder")
    with sample_tab:
        label = st.selectbox("Sample scan (real scans shipped with pydicom, synthetic phantoms shipped with MedUI)",
                             SAMPLES, key="viewer.sample")
        if st.button("Load sample", key="viewer.sample-load", type="primary", icon=":material/download:"):
            with st.spinner("Reading sample…"):
                state.add_inputs([sample_path(label)], label)
    with pacs_tab:
        pacs.open_panel()


def _read_uploads(files: list[Any] | None, slot: str) -> None:
    fresh = state.new_uploads(files, slot)
    if fresh:
        with st.spinner(f"Reading {len(fresh)} file(s)…"):
            result = state.add_inputs([(f.name, f.getvalue()) for f in fresh], f"{len(fresh)} uploaded file(s)")
        st.toast(result.summary())
        st.session_state[GENERATION] += 1
        st.rerun()


def problems_panel() -> None:
    if state.last_load():
        st.caption(state.last_load())
    problems = state.skipped()
    if not problems:
        return
    with st.expander(f"{len(problems)} file(s) not loaded", expanded=len(problems) <= 5, icon=":material/warning:"):
        for p in problems:
            st.markdown(f"- **{p.file}** {p.reason}")


def series_picker(items: list[state.Loaded]) -> state.Loaded:
    """A thumbnail strip with a one-line summary each and the series choice; returns the chosen series."""
    ids = [i.id for i in items]
    # format_func gets plain labels: Streamlit keeps it with the widget, it must not hold the series
    labels = {i.id: f"{k}. {i.series.summary()}" for k, i in enumerate(items, 1)}
    pick, strip = st.columns([2, 3], vertical_alignment="bottom")
    with pick:
        chosen = st.selectbox("Series", ids, format_func=labels.__getitem__, key="viewer.series")
    with strip:
        shown = items[:8]
        for col, (k, item) in zip(st.columns(8), enumerate(shown, 1), strict=False):
            if item.thumb is None:
                item.thumb = thumbnail(item.series)
            col.image(item.thumb, caption=f"{k}. {item.series.modality} · {item.series.n_slices} sl.", width=64)
    return items[ids.index(chosen)] if chosen in ids else items[0]


@st.fragment
def reading_view(item_id: str) -> None:
    """The series in the in-browser reader; the server-rendered viewer when this session asks for it
    (`MEDUI_VIEWER=classic`, `?viewer=classic`) or when the browser reported it cannot hold the series."""
    item = state.find(item_id)
    if item is None:
        return
    failed = st.session_state.get(reader.failed_key(item_id))
    if failed or reader.classic_requested():
        if failed:
            st.warning(f"The in-browser viewer cannot show this series here: {failed} Showing the server-rendered "
                       "view instead (each slice is rendered on the server).", icon=":material/warning:")
        slice_viewer(item_id)
        return
    reader.reader(item.series, item_id, key=f"viewer.reader.{item_id}", height=540, store_key=item.key)
    st.caption(size_caption(item.series, plane_view(item.series, "native", 0)))


def _presets(item: state.Loaded) -> dict[str, Window | None]:
    s = item.series
    out: dict[str, Window | None] = {}
    if s.window is not None or s.voi_lut is not None:
        out["DICOM default"] = s.window
    out[AUTO_CT if s.modality == "CT" else AUTO] = None
    if s.modality == "CT":
        out.update(CT_PRESETS)
    return out


def _preset_window(item: state.Loaded, name: str) -> Window:
    """The preset's window; 'Auto' (and a VOI-LUT-only 'DICOM default') start the sliders at percentiles."""
    return _presets(item).get(name) or series_auto_window(item.series)


def _on_preset(item_id: str) -> None:
    item = state.find(item_id)
    if item is None:
        return
    k = item.id
    w = _preset_window(item, st.session_state[f"viewer.preset.{k}"])
    st.session_state[f"viewer.center.{k}"] = float(w.center)
    st.session_state[f"viewer.width.{k}"] = float(max(w.width, 1.0))


def _on_manual(item_id: str) -> None:
    st.session_state[f"viewer.preset.{item_id}"] = "Custom"


@st.fragment
def slice_viewer(item_id: str) -> None:
    """Plane, slice and window controls beside the image; only this part reruns when they move."""
    item = state.find(item_id)
    if item is None:
        return
    s = item.series
    k = item.id
    img_col, ctl_col = st.columns([4, 1.3])
    with ctl_col:
        plane = "native"
        if s.is_volume:
            plane = st.radio("Plane", list(PLANES), index=list(PLANES).index(native_plane(s)), key=f"viewer.plane.{k}",
                             horizontal=True, format_func=str.capitalize)
        n = plane_count(s, plane)
        index = 0
        if n > 1:
            index = st.slider("Slice", 1, n, value=n // 2 + 1, key=f"viewer.slice.{k}.{plane}") - 1
        presets = _presets(item)
        names = list(presets) + ["Custom"]
        if f"viewer.preset.{k}" not in st.session_state:
            dicom_or_not_ct = s.window or s.voi_lut or s.modality != "CT"
            st.session_state[f"viewer.preset.{k}"] = names[0] if dicom_or_not_ct else "Mediastinum / soft tissue"
            _on_preset(k)
        colour = s.is_color
        preset = st.selectbox("Window preset", names, key=f"viewer.preset.{k}", on_change=_on_preset, args=(k,),
                              disabled=colour)
        lo, hi = s.value_range
        span = max(hi - lo, 1.0)
        center = st.slider("Window level (center)", float(lo - span / 2), float(hi + span / 2),
                           key=f"viewer.center.{k}", step=_step(span), on_change=_on_manual, args=(k,),
                           disabled=colour)
        width = st.slider("Window width", 1.0, float(span * 2), key=f"viewer.width.{k}", step=_step(span),
                          on_change=_on_manual, args=(k,), disabled=colour)
        invert = st.checkbox("Invert", value=shows_inverted(s), key=f"viewer.invert.{k}",
                             help="MONOCHROME1 images start inverted, as the standard requires.")
        hover = st.toggle("Pixel readout on hover", value=True, key=f"viewer.hover.{k}")
    view = plane_view(s, plane, index)
    use_lut = preset == "DICOM default" and s.voi_lut is not None and s.window is None
    u8 = render(s, view, Window(center, width), invert, use_voi_lut=use_lut)
    unit = "HU" if s.modality == "CT" else "value"
    title = f"{plane.capitalize() if plane != 'native' else 'Image'} · {_where(s, plane, view, index, n)}"
    title += f" · W {width:.0f} L {center:.0f}" if not colour else ""
    with img_col:
        fig = slice_figure(view, u8, unit, hover=hover, title=title)
        config = {"scrollZoom": True, "displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
        st.plotly_chart(fig, width="stretch", key=f"viewer.figure.{k}", config=config)
        st.caption(size_caption(s, view))


def _where(s: Series, plane: str, view: PlaneView, index: int, n: int) -> str:
    """The slice number and position: the one numbering (`slice_label`) in the native plane."""
    if plane in ("native", native_plane(s)):
        return slice_label(s, index)
    return f"slice {index + 1}/{n} · {view.labels[2]} = {view.fixed:.1f} mm"


def size_caption(s: Series, view: PlaneView) -> str:
    """Pixel and slice size in mm, or in pixels with 'pixel spacing unknown' when the file has none."""
    oblique = " · oblique: shown on the nearest patient axes" if view.approximate else ""
    if not pixel_spacing_known(s):
        rows, cols = view.image.shape[:2]
        return f"Pixel spacing unknown: sizes in pixels · {cols} x {rows} px · {s.photometric}"
    if not s.has_geometry:  # a pixel size but no orientation or positions (a CR): no slice spacing
        return f"Pixel {view.col_spacing:.3f} x {view.row_spacing:.3f} mm · {s.photometric}"
    slices = f" · slice spacing {s.spacing[0]:.3f} mm" if s.n_slices > 1 else ""
    return f"Pixel {view.col_spacing:.3f} x {view.row_spacing:.3f} mm{slices} · {s.photometric}{oblique}"


def _step(span: float) -> float:
    return 1.0 if span > 50 else float(10 ** np.floor(np.log10(max(span, 1e-6)) - 2))


def header_panel(item: state.Loaded) -> None:
    s = item.series
    if s.warnings:
        for w in s.warnings:
            st.warning(w, icon=":material/straighten:")
    if not s.header:
        return
    with st.expander("DICOM header", expanded=False):
        reveal = st.toggle("Reveal patient-identifying values", value=False, key=f"viewer.reveal-{item.id}",
                           help="Identifying attributes (DICOM PS3.15 basic profile) are masked by default.")
        if reveal:
            st.caption("Identifying values are visible. Do not share screenshots of this table.")
        st.dataframe(deid.table(s.header, reveal), hide_index=True, width="stretch", height=360)
