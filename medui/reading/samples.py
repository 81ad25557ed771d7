"""Real sample scans that ship inside installed packages, for a first look without data."""

from __future__ import annotations

from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
# label -> file shipped in medui/sample_data (synthetic, made by medui.synthetic.phantoms; RLE compressed).
PHANTOM_SAMPLES = {
    "Synthetic chest phantom with a nodule (MedUI)": "phantom_chest_nodule.dcm",
    "Synthetic chest phantom with a consolidation (MedUI)": "phantom_chest_consolidation.dcm",
    "Synthetic chest phantom, normal (MedUI)": "phantom_chest_normal.dcm",
}
# label -> file name in pydicom's bundled test files (no download needed).
PYDICOM_SAMPLES = {
    "CT chest slice (pydicom CT_small)": "CT_small.dcm",
    "MR slice (pydicom MR_small)": "MR_small.dcm",
    "Ultrasound cine, colour, 30 frames": "examples_ybr_color.dcm",
}


SAMPLES = [*PYDICOM_SAMPLES, *PHANTOM_SAMPLES]


def sample_path(label: str) -> Path:
    """Path of a bundled sample; raises KeyError for an unknown label."""
    from pydicom.data import get_testdata_file

    if label in PHANTOM_SAMPLES:
        return SAMPLE_DIR / PHANTOM_SAMPLES[label]
    name = PYDICOM_SAMPLES[label]
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"pydicom's sample '{name}' is not installed; reinstall pydicom")
    return Path(path)
